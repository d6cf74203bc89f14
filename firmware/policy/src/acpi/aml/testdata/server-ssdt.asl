/*
 * The SSDT that goes with server-dsdt.asl: it gives \_SB.PCI2 its _PXM by reopening the
 * DSDT's device (the reader merges by absolute path across tables), adds a PCI host bridge
 * _HID below PCI0 (not a root: it has a host-bridge ancestor), and declares External
 * references. Compiled with `iasl -p server-ssdt server-ssdt.asl`.
 */
DefinitionBlock ("", "SSDT", 2, "NUMAVI", "SRVPXM", 0x00000001)
{
    External (\_SB.PCI0, DeviceObj)
    External (\_SB.PCI2, DeviceObj)
    External (\PXMS, IntObj)

    Scope (\_SB.PCI2)
    {
        Name (_PXM, 0x03)
        Name (_CRS, ResourceTemplate ()
        {
            WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                0x0000, 0x0080, 0x00BF, 0x0000, 0x0040,,,)
        })
    }

    Scope (\_SB.PCI0)
    {
        Device (HB2)
        {
            Name (_HID, EisaId ("PNP0A03"))
            Name (_UID, 0x20)
        }
    }
}
