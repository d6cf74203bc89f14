//! A writer for the "newc" cpio format, the one the Linux kernel unpacks as an initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`): per entry a 110-byte
//! ASCII header ("070701" then 13 fields of 8 hex digits), the NUL-terminated name padded so
//! that header and name fill a multiple of 4 bytes, then the data padded to 4 bytes; the
//! archive ends with the entry "TRAILER!!!".

/// File-type bits of `mode` (`<sys/stat.h>`).
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;

/// The magic of a newc header without checksums.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// Bytes in a newc header.
pub const HEADER_LEN: usize = 110;

/// Builds a newc archive in memory. Entries are owned by root, dated 0 (so the same inputs
/// give the same bytes), and numbered from inode 1.
pub struct CpioWriter {
    out: Vec<u8>,
    next_inode: u32,
}

impl Default for CpioWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CpioWriter {
    pub fn new() -> Self {
        CpioWriter {
            out: Vec::new(),
            next_inode: 1,
        }
    }

    /// A directory, `perm` like 0o755. Names have no leading `/` ("usr/bin").
    pub fn directory(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), b"");
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data);
    }

    /// A symbolic link to `target`: the data is the target, without NUL.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// A character device `major:minor`.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), b"");
    }

    /// Adds the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry(TRAILER, 0, 1, (0, 0), b"");
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let inode = self.next_inode;
        self.next_inode += 1;
        let name_size = name.len() + 1; // With its NUL.
        let fields: [u32; 13] = [
            inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).expect("cpio entries are below 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name_size).expect("short name"),
            0, // check: only for "070702"
        ];
        self.out.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    /// Zeros up to the next multiple of 4: the archive starts aligned, so that aligns both
    /// the end of header + name and the end of the data.
    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back.
    #[derive(Debug, PartialEq)]
    struct Entry {
        fields: [u32; 13],
        name: String,
        data: Vec<u8>,
    }

    /// A strict reader: checks magic, NUL, padding (zero bytes) and that the trailer ends it.
    fn read_back(archive: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "entry at {at} is not 4-byte aligned");
            let header = &archive[at..at + HEADER_LEN];
            assert_eq!(&header[..6], NEWC_MAGIC);
            let mut fields = [0u32; 13];
            for (i, field) in fields.iter_mut().enumerate() {
                let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap();
                assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
                *field = u32::from_str_radix(hex, 16).unwrap();
            }
            let name_size = fields[11] as usize;
            let name_start = at + HEADER_LEN;
            let name = &archive[name_start..name_start + name_size];
            assert_eq!(name.last(), Some(&0), "name not NUL-terminated");
            let name = String::from_utf8(name[..name_size - 1].to_vec()).unwrap();
            let data_start = (name_start + name_size).next_multiple_of(4);
            assert!(archive[name_start + name_size..data_start]
                .iter()
                .all(|&b| b == 0));
            let data_end = data_start + fields[6] as usize;
            let data = archive[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            assert!(archive[data_end..next].iter().all(|&b| b == 0));
            at = next;
            let done = name == TRAILER;
            entries.push(Entry { fields, name, data });
            if done {
                assert_eq!(at, archive.len(), "bytes after the trailer");
                return entries;
            }
        }
    }

    #[test]
    fn entries_read_back_with_their_fields() {
        let mut cpio = CpioWriter::new();
        cpio.directory("bin", 0o755);
        cpio.file("bin/busybox", 0o755, b"\x7fELF12345"); // 9 bytes: 3 of padding.
        cpio.symlink("bin/sh", "busybox");
        cpio.char_device("dev/console", 0o600, 5, 1);
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        let entries = read_back(&cpio.finish());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev/console",
                "init",
                TRAILER
            ]
        );
        // ino, mode, uid, gid, nlink, mtime, filesize, devmaj, devmin, rdevmaj, rdevmin,
        // namesize, check.
        assert_eq!(
            entries[0].fields,
            [1, 0o40755, 0, 0, 2, 0, 0, 0, 0, 0, 0, 4, 0]
        );
        assert_eq!(entries[1].fields[..7], [2, 0o100755, 0, 0, 1, 0, 9]);
        assert_eq!(entries[1].data, b"\x7fELF12345");
        assert_eq!(entries[2].fields[1], 0o120777);
        assert_eq!(entries[2].data, b"busybox");
        assert_eq!(entries[3].fields[1], 0o20600);
        assert_eq!(entries[3].fields[9..11], [5, 1]);
        assert_eq!(entries[5].fields, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0]);
    }

    #[test]
    fn header_is_ascii_hex_of_fixed_width() {
        let mut cpio = CpioWriter::new();
        cpio.file("a", 0o644, b"xyz");
        let archive = cpio.finish();
        let fields = [
            "00000001", "000081A4", "00000000", "00000000", "00000001", "00000000", "00000003",
            "00000000", "00000000", "00000000", "00000000", "00000002", "00000000",
        ];
        assert_eq!(
            std::str::from_utf8(&archive[..HEADER_LEN]).unwrap(),
            format!("070701{}", fields.concat())
        );
        // Header 110 + "a\0" = 112, aligned; data 3 + 1 pad.
        assert_eq!(&archive[HEADER_LEN..HEADER_LEN + 6], b"a\0xyz\0");
    }

    #[test]
    fn empty_archive_is_the_trailer_alone() {
        let archive = CpioWriter::new().finish();
        assert_eq!(archive.len(), 124); // 110 + 11 name bytes, padded to 124.
        assert_eq!(read_back(&archive).len(), 1);
    }
}
