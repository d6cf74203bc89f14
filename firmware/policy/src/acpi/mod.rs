//! ACPI discovery over untrusted table bytes (ACPI 6.5 §5.2). Work in progress.
