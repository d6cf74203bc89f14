//! Layout loading end to end: the ready-made layouts in `layouts/` are valid and check into
//! the expected form, every fixture in `layouts/bad/` gets exactly the errors its `# expect:`
//! lines list, a few limits too long for a fixture are checked inline, and the generated Rust
//! matches the snapshot in `tests/snapshots/`.
#![cfg(feature = "host")]

use std::path::{Path, PathBuf};

use numavisor_layout::{
    default_mac, emit_rust, generate_for_build, load_str, load_with, BlockSize, CheckedLayout,
    CheckedPartition, CheckedVcpuGroup, ConsoleMode, ExitAction, ImageKind, LayoutErrors,
    LoadOptions, NicSpec, PoolCheck, VnodeSpec,
};

/// A minimal bzImage header that passes the boot-protocol checks: protocol `version`, one
/// setup sector, a 512-byte "kernel", `cmdline_size` 255.
fn tiny_bzimage(version: u16) -> Vec<u8> {
    let mut image = vec![0u8; 1536];
    image[0x1F1] = 1;
    image[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    image[0x200..0x202].copy_from_slice(&[0xEB, 0x66]);
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    image[0x211] = 1; // LOADED_HIGH
    image[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    image[0x234] = 1;
    image[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    image[0x238..0x23C].copy_from_slice(&255u32.to_le_bytes());
    image[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    image[0x260..0x264].copy_from_slice(&0x1000u32.to_le_bytes());
    image
}

/// A guest directory holding a dummy `test-guest.elf` (the checks only need it to exist),
/// and in its `linux/` a synthetic bzImage `vmlinuz` and an `initramfs.cpio`.
struct Guests {
    dir: tempfile::TempDir,
}

impl Guests {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test-guest.elf"), b"\x7fELF, not really").unwrap();
        let linux = dir.path().join("linux");
        std::fs::create_dir(&linux).unwrap();
        std::fs::write(linux.join("vmlinuz"), tiny_bzimage(0x020F)).unwrap();
        std::fs::write(linux.join("initramfs.cpio"), b"070701, not really").unwrap();
        Guests { dir }
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            guest_dir: self.dir.path().to_path_buf(),
            linux_dir: self.dir.path().join("linux"),
        }
    }

    fn image(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("test-guest.elf")).unwrap()
    }

    fn load(&self, path: &Path) -> Result<CheckedLayout, LayoutErrors> {
        load_with(path, &self.options())
    }

    /// Checks `text` as the layout `inline.toml` in the temp dir (no file is written).
    fn load_text(&self, text: &str) -> Result<CheckedLayout, LayoutErrors> {
        load_str(text, &self.dir.path().join("inline.toml"), &self.options())
    }
}

fn layouts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../layouts")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// A partition as the ready-made layouts write them: 1 vCPU and 64 MiB on `node`.
fn simple(name: &str, node: u32, image: PathBuf) -> CheckedPartition {
    CheckedPartition {
        name: name.into(),
        vcpus: vec![CheckedVcpuGroup::OnNode {
            node,
            count: 1,
            vnode: None,
        }],
        memory: vec![VnodeSpec::fixed(64 << 20, node)],
        pool_bytes: 256 << 10,
        max_page: BlockSize::Size2M,
        image,
        image_kind: ImageKind::PvhElf,
        initrd: None,
        command_line: "mode=report".into(),
        on_fault: ExitAction::Stop,
        on_shutdown: ExitAction::Stop,
        pool_check: PoolCheck::Build,
        time_limit_ms: None,
        restart_limit: 8,
        parent: None,
        dynamic: false,
        console: ConsoleMode::Escaped,
        nics: vec![],
        pci: vec![],
    }
}

#[test]
fn ready_made_layouts_are_valid() {
    let guests = Guests::new();
    let files = toml_files(&layouts_dir());
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_str().unwrap())
        .collect();
    for expected in [
        "default",
        "four-nodes",
        "isolation",
        "missing-node",
        "small-pool",
        "spanning",
    ] {
        assert!(names.contains(&expected), "layouts/{expected}.toml missing");
    }
    for file in &files {
        if let Err(errors) = guests.load(file) {
            panic!("{} should be valid:\n{errors}", file.display());
        }
    }
}

#[test]
fn test_guests_layout_checks_into_two_partitions() {
    let guests = Guests::new();
    let path = layouts_dir().join("test-guests.toml");
    let layout = guests.load(&path).unwrap();
    assert_eq!(
        layout,
        CheckedLayout {
            name: "test-guests".into(),
            source: path,
            partitions: vec![
                simple("alpha", 0, guests.image()),
                simple("beta", 1, guests.image()),
            ],
            networks: vec![],
            boot_options: String::new(),
            warnings: vec![],
        }
    );
}

#[test]
fn spanning_layout_has_two_vnodes() {
    let guests = Guests::new();
    let layout = guests.load(&layouts_dir().join("spanning.toml")).unwrap();
    let mut wide = simple("wide", 0, guests.image());
    wide.memory.push(VnodeSpec::fixed(64 << 20, 1));
    assert_eq!(layout.partitions, vec![wide]);
}

#[test]
fn four_nodes_layout_mixes_page_sizes() {
    let guests = Guests::new();
    let layout = guests.load(&layouts_dir().join("four-nodes.toml")).unwrap();
    let pages: Vec<_> = layout.partitions.iter().map(|p| p.max_page).collect();
    use BlockSize::{Size1G, Size2M};
    assert_eq!(pages, [Size2M, Size1G, Size2M, Size1G]);
    for (node, p) in layout.partitions.iter().enumerate() {
        assert_eq!(p.memory, [VnodeSpec::fixed(1 << 30, node as u32)]);
    }
}

#[test]
fn hot_add_layout_grows_vnode_1_above_4_gib() {
    let guests = Guests::new();
    let layout = guests.load(&layouts_dir().join("hot-add.toml")).unwrap();
    let [grower] = &layout.partitions[..] else {
        panic!("one partition expected: {layout:?}")
    };
    const MIB: u64 = 1 << 20;
    assert!(grower.dynamic);
    let vnode = |node, max| VnodeSpec {
        size: 192 * MIB,
        node,
        min: 128 * MIB,
        max,
    };
    assert_eq!(grower.memory, [vnode(0, 192 * MIB), vnode(1, 704 * MIB)]);
    assert_eq!(grower.memory[1].growth(), 512 * MIB);
    assert_eq!(grower.hot_add_regions(), [None, Some((4 << 30, 512 * MIB))]);
    // 3 SLAT pages for the RAM, 1 for the hot-add region, 2 VMCBs, 5 bitmap pages.
    assert_eq!(grower.hot_add_table_pages(), 1);
    assert_eq!(grower.minimum_pool_bytes(), 11 * 4096);
    assert!(grower.pool_bytes >= grower.minimum_pool_bytes());
    // What the firmware embeds keeps memory_max above size.
    assert!(emit_rust(&layout).contains(&format!(
        "VnodeSpec {{ size: {}, node: 1, min: {}, max: {} }}",
        192 * MIB,
        128 * MIB,
        704 * MIB
    )));
}

#[test]
fn growing_vnodes_fit_the_virtio_mmio_slots_and_the_pool_check() {
    use numavisor_layout::limits::MAX_GROWING_VNODES;
    // One virtio-mem device per growing vnode, in the slots after the balloon and the NICs.
    assert_eq!(
        numavisor_acpi_tables::VIRTIO_MEM_FIRST_SLOT + MAX_GROWING_VNODES,
        numavisor_acpi_tables::MAX_VIRTIO_MMIO
    );
    assert_eq!(
        numavisor_acpi_tables::VIRTIO_MEM_FIRST_SLOT,
        1 + numavisor_layout::limits::MAX_NICS_PER_PARTITION
    );
    // Four vnodes may grow, and the pool the error names is enough.
    let guests = Guests::new();
    let memory = "memory = [{ size = \"64M\", node = 0, memory_max = \"192M\" }, \
                  { size = \"64M\", node = 0, memory_max = \"192M\" }, \
                  { size = \"64M\", node = 0, memory_max = \"192M\" }, \
                  { size = \"64M\", node = 0, memory_max = \"1088M\" }]";
    let text = |pool: &str| {
        format!(
            "[[partition]]\nname = \"four\"\nimage = \"test-guest\"\n\
             vcpus = [{{ node = 0, count = 1 }}]\n{memory}\ndynamic = true\npool = \"{pool}\"\n"
        )
    };
    let errors = guests.load_text(&text("36K")).unwrap_err().to_string();
    // 256 MiB of RAM: 3 pages; 1408 MiB of growth from 4 GiB crosses into 5 GiB: 2 PDs.
    assert!(
        errors.contains("2 SLAT table pages for 1408 MiB of hot-add with 2 MiB pages"),
        "{errors}"
    );
    assert!(errors.ends_with("use pool = \"44K\" or more"), "{errors}");
    let layout = guests.load_text(&text("44K")).unwrap();
    let regions = layout.partitions[0].hot_add_regions();
    const MIB: u64 = 1 << 20;
    assert_eq!(
        regions,
        [
            Some((4096 * MIB, 128 * MIB)),
            Some((4224 * MIB, 128 * MIB)),
            Some((4352 * MIB, 128 * MIB)),
            Some((4480 * MIB, 1024 * MIB)),
        ]
    );
}

#[test]
fn small_pool_layout_defers_its_pool_check_with_a_warning() {
    let guests = Guests::new();
    let layout = guests.load(&layouts_dir().join("small-pool.toml")).unwrap();
    let starved = &layout.partitions[1];
    assert_eq!(
        (starved.pool_bytes, starved.pool_check),
        (4096, PoolCheck::Boot)
    );
    assert_eq!(
        layout.warnings,
        [
            "partition \"starved\": pool_check = \"boot\": its pool (4 KiB) is not checked at \
          build time and may be refused at boot"
        ]
    );
}

#[test]
fn layouts_in_the_other_forms_check_too() {
    // By APIC IDs, explicit vnodes, integer sizes, an image by path, restart actions, defaults.
    let guests = Guests::new();
    std::fs::create_dir(guests.dir.path().join("images")).unwrap();
    std::fs::write(guests.dir.path().join("images/custom.elf"), b"x").unwrap();
    let layout = guests
        .load_text(
            r#"
            [[partition]]
            name = "data-plane-2"
            image = "images/custom.elf"
            vcpus = [{ apic_ids = [2, 3], vnode = 1 }, { node = 0, count = 2 }]
            memory = [{ size = 67108864, node = 0 }, { size = "2G", node = 1 }]
            pool = "1M"
            max_page = "1G"
            on_fault = "restart"
            on_shutdown = "restart"
            "#,
        )
        .unwrap();
    let image = std::fs::canonicalize(guests.dir.path().join("images/custom.elf")).unwrap();
    assert_eq!(
        layout.partitions,
        [CheckedPartition {
            name: "data-plane-2".into(),
            vcpus: vec![
                CheckedVcpuGroup::ApicIds {
                    ids: vec![2, 3],
                    vnode: Some(1)
                },
                CheckedVcpuGroup::OnNode {
                    node: 0,
                    count: 2,
                    vnode: None
                },
            ],
            memory: vec![VnodeSpec::fixed(64 << 20, 0), VnodeSpec::fixed(2 << 30, 1),],
            pool_bytes: 1 << 20,
            max_page: BlockSize::Size1G,
            image,
            image_kind: ImageKind::PvhElf,
            initrd: None,
            command_line: String::new(),
            on_fault: ExitAction::Restart,
            on_shutdown: ExitAction::Restart,
            pool_check: PoolCheck::Build,
            time_limit_ms: None,
            restart_limit: 8,
            parent: None,
            dynamic: false,
            console: ConsoleMode::Escaped,
            nics: vec![],
            pci: vec![],
        }]
    );
}

/// Each `# expect:` line of a fixture; ` ... ` separates parts that must appear in order.
fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

fn matches(error: &str, expected: &str) -> bool {
    let mut rest = error;
    for part in expected.split(" ... ") {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn bad_layouts_get_exactly_their_expected_errors() {
    let guests = Guests::new();
    let files = toml_files(&layouts_dir().join("bad"));
    assert!(files.len() >= 10, "fixtures missing: {files:?}");
    for file in files {
        let expected = expectations(&std::fs::read_to_string(&file).unwrap());
        assert!(
            !expected.is_empty(),
            "{}: no # expect: lines",
            file.display()
        );
        let errors = match guests.load(&file) {
            Ok(_) => panic!("{} should be refused", file.display()),
            Err(errors) => errors,
        };
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        let context = format!(
            "{}: got\n{errors}\nexpected\n{}",
            file.display(),
            expected.join("\n")
        );
        assert_eq!(lines.len(), expected.len(), "{context}");
        for (line, want) in lines.iter().zip(&expected) {
            assert!(line.starts_with(&file.display().to_string()), "{context}");
            assert!(
                matches(line, want),
                "{line:?} does not match {want:?}\n{context}"
            );
        }
    }
}

/// A valid partition table named `name`, with `extra` lines appended.
fn partition(name: &str, node: u32, size: &str, extra: &str) -> String {
    format!(
        "[[partition]]\nname = \"{name}\"\nimage = \"test-guest\"\n\
         vcpus = [{{ node = {node}, count = 1 }}]\nmemory = [{{ size = \"{size}\", node = {node} }}]\n\
         pool = \"1M\"\nmax_page = \"1G\"\n{extra}\n"
    )
}

#[test]
fn at_most_64_partitions() {
    let guests = Guests::new();
    let text: String = (0..65)
        .map(|i| partition(&format!("p{i}"), 0, "64M", ""))
        .collect();
    let errors = guests.load_text(&text).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors
        .to_string()
        .ends_with(": 65 partitions; a layout holds at most 64"));
    let text: String = (0..64)
        .map(|i| partition(&format!("p{i}"), 0, "64M", ""))
        .collect();
    assert_eq!(guests.load_text(&text).unwrap().partitions.len(), 64);
}

#[test]
fn at_most_16_tib_per_host_node() {
    let guests = Guests::new();
    let text: String = (0..17)
        .map(|i| partition(&format!("p{i}"), 3, "1024G", ""))
        .collect();
    let errors = guests.load_text(&text).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        errors.to_string().ends_with(
            ": host node 3: the partitions ask for 17 TiB of guest memory on it, more than the \
             limit of 16 TiB per node; move vnodes to other nodes or shrink them"
        ),
        "{errors}"
    );
}

#[test]
fn command_line_limits() {
    let guests = Guests::new();
    let long = format!("command_line = \"{}\"", "x".repeat(1025));
    let text = partition("long", 0, "64M", &long)
        + &partition("nul", 1, "64M", "command_line = \"a\\u0000b\"");
    let errors = guests.load_text(&text).unwrap_err().to_string();
    let lines: Vec<_> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(lines[0].ends_with(
        "partition \"long\": field command_line: 1025 bytes long; at most 1024 (1 KiB)"
    ));
    assert!(lines[1].contains("partition \"nul\": field command_line: contains a NUL character"));
    let exact = format!("command_line = \"{}\"", "x".repeat(1024));
    assert!(guests
        .load_text(&partition("long", 0, "64M", &exact))
        .is_ok());
}

#[test]
fn text_checks_as_its_file_does() {
    let guests = Guests::new();
    let mut files = toml_files(&layouts_dir());
    files.extend(toml_files(&layouts_dir().join("bad")));
    files.push(tests_dir().join("linux.toml"));
    files.push(tests_dir().join("networks.toml"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            load_str(&text, &file, &guests.options()),
            guests.load(&file),
            "{}",
            file.display()
        );
    }
    // The path only names and places the layout: it is not read.
    let text = partition("alpha", 0, "64M", "");
    let layout = load_str(&text, Path::new("no/such/inline.toml"), &guests.options()).unwrap();
    assert_eq!(layout.name, "inline");
    assert_eq!(layout.source, Path::new("no/such/inline.toml"));
    assert_eq!(layout.partitions[0].image, guests.image());
}

#[test]
fn an_unreadable_file_is_one_error() {
    let guests = Guests::new();
    let errors = guests.load(Path::new("no/such/layout.toml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(errors
        .to_string()
        .starts_with("no/such/layout.toml: cannot read the layout:"));
}

/// The generated source with the machine's paths replaced by `$LAYOUTS`, `$TESTS` and
/// `$GUESTS`.
fn portable(source: &str, guests: &Guests) -> String {
    let guest_dir = std::fs::canonicalize(guests.dir.path()).unwrap();
    source
        .replace(&layouts_dir().display().to_string(), "$LAYOUTS")
        .replace(&tests_dir().display().to_string(), "$TESTS")
        .replace(&guest_dir.display().to_string(), "$GUESTS")
}

/// This crate's `tests/`, holding layouts that are not ready-made (Linux, networks).
fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

#[test]
fn linux_layout_names_kernel_and_initramfs() {
    let guests = Guests::new();
    let layout = guests.load(&tests_dir().join("linux.toml")).unwrap();
    let linux = std::fs::canonicalize(guests.dir.path().join("linux")).unwrap();
    let [partition] = &layout.partitions[..] else {
        panic!("one partition expected: {layout:?}")
    };
    assert_eq!(partition.image, linux.join("vmlinuz"));
    assert_eq!(partition.image_kind, ImageKind::LinuxBzImage);
    assert_eq!(partition.initrd, Some(linux.join("initramfs.cpio")));
    assert_eq!(partition.command_line, "console=ttyS0 nv.test=poweroff");
}

#[test]
fn linux_images_by_path_and_their_limits() {
    let guests = Guests::new();
    std::fs::write(guests.dir.path().join("kernel.bin"), tiny_bzimage(0x020C)).unwrap();
    std::fs::write(guests.dir.path().join("disk.cpio"), b"070701").unwrap();
    let by_path = "image = \"./kernel.bin\"\ninitrd = \"./disk.cpio\"";
    let text = partition("by-path", 0, "64M", by_path).replace("image = \"test-guest\"\n", "");
    let layout = guests.load_text(&text).unwrap();
    let p = &layout.partitions[0];
    assert_eq!(p.image_kind, ImageKind::LinuxBzImage);
    assert_eq!(
        p.initrd.as_deref(),
        Some(
            std::fs::canonicalize(guests.dir.path().join("disk.cpio"))
                .unwrap()
                .as_path()
        )
    );
    // A bzImage without an initrd is fine; a command line longer than cmdline_size is not.
    let long = format!("command_line = \"{}\"", "x".repeat(256));
    let text = partition("long", 0, "64M", &long).replace("\"test-guest\"", "\"linux\"");
    let errors = guests.load_text(&text).unwrap_err().to_string();
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(
        errors.contains("partition \"long\": field command_line: 256 bytes long; the kernel ")
            && errors.ends_with("reads at most 255 (its cmdline_size)"),
        "{errors}"
    );
    let exact = format!("command_line = \"{}\"", "x".repeat(255));
    let text = partition("long", 0, "64M", &exact).replace("\"test-guest\"", "\"linux\"");
    assert!(guests.load_text(&text).is_ok());
}

#[test]
fn emitted_rust_matches_the_snapshot() {
    let guests = Guests::new();
    for name in [
        "default",
        "spanning",
        "four-nodes",
        "linux",
        "networks",
        "hot-add",
    ] {
        let dir = if ["linux", "networks"].contains(&name) {
            tests_dir()
        } else {
            layouts_dir()
        };
        let layout = guests.load(&dir.join(format!("{name}.toml"))).unwrap();
        let source = portable(&emit_rust(&layout), &guests);
        assert_eq!(emit_rust(&layout), emit_rust(&layout), "not deterministic");
        let snapshot =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/snapshots/{name}.rs.txt"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&snapshot, &source).unwrap();
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        assert_eq!(
            source,
            expected,
            "{} differs (UPDATE_SNAPSHOTS=1 cargo test -p numavisor-layout --features host rewrites it)",
            snapshot.display()
        );
    }
}

#[test]
fn build_helper_writes_the_tables_or_reports_every_error() {
    let guests = Guests::new();
    // generate_for_build uses the environment's guest and Linux directories, as the build
    // script does; default.toml names "linux", else looked for in `<target dir>/linux`.
    std::env::set_var(numavisor_layout::GUEST_DIR_ENV, guests.dir.path());
    std::env::set_var(
        numavisor_layout::LINUX_DIR_ENV,
        guests.dir.path().join("linux"),
    );
    let out = guests.dir.path().join("layout.rs");
    generate_for_build(&layouts_dir().join("default.toml"), &out).unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("pub static LAYOUT: numavisor_layout::Layout"));
    let bad = layouts_dir().join("bad/vnodes.toml");
    let error = generate_for_build(&bad, &out).unwrap_err();
    assert_eq!(error.lines().count(), 2, "{error}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        written,
        "kept on error"
    );
}

#[test]
fn a_parent_may_have_several_children_and_chains_are_allowed() {
    let guests = Guests::new();
    let text = [
        partition("root", 0, "64M", ""),
        partition("left", 0, "64M", "parent = \"root\""),
        partition("right", 1, "64M", "parent = \"root\""),
        partition("grandchild", 1, "64M", "parent = \"right\""),
    ]
    .concat();
    let layout = guests.load_text(&text).unwrap();
    let parents: Vec<Option<&str>> = layout
        .partitions
        .iter()
        .map(|p| p.parent.as_deref())
        .collect();
    assert_eq!(parents, [None, Some("root"), Some("root"), Some("right")]);
    let emitted = emit_rust(&layout);
    assert!(emitted.contains("parent: Some(\"right\"),"), "{emitted}");
    // A longer cycle is named on each partition in it.
    let cycle = [
        partition("a", 0, "64M", "parent = \"c\""),
        partition("b", 0, "64M", "parent = \"a\""),
        partition("c", 0, "64M", "parent = \"b\""),
    ]
    .concat();
    let errors = guests.load_text(&cycle).unwrap_err().to_string();
    assert!(errors.contains("(a -> c -> b -> a)"), "{errors}");
    assert!(errors.contains("(c -> b -> a -> c)"), "{errors}");
}

#[test]
fn networks_and_nics_check_into_the_layout() {
    let guests = Guests::new();
    // A network may share a partition's name; MACs are read in either case.
    let text = [
        "[[network]]\nname = \"alpha\"\n[[network]]\nname = \"san\"\n".to_string(),
        partition(
            "alpha",
            0,
            "64M",
            "nics = [{ network = \"san\" }, { network = \"alpha\", mac = \"02:AB:cd:00:00:01\" }]",
        ),
        partition("beta", 1, "64M", "nics = [{ network = \"alpha\" }]"),
        partition("gamma", 1, "64M", "nics = [{ network = \"san\" }]"),
    ]
    .concat();
    let layout = guests.load_text(&text).unwrap();
    let names: Vec<&str> = layout.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["alpha", "san"]);
    let nics: Vec<Vec<NicSpec>> = layout.partitions.iter().map(|p| p.nics.clone()).collect();
    assert_eq!(
        nics,
        [
            vec![
                NicSpec {
                    network: 1,
                    mac: default_mac(0, 0)
                },
                NicSpec {
                    network: 0,
                    mac: [0x02, 0xAB, 0xCD, 0, 0, 1]
                },
            ],
            vec![NicSpec {
                network: 0,
                mac: default_mac(1, 0)
            }],
            vec![NicSpec {
                network: 1,
                mac: default_mac(2, 0)
            }],
        ]
    );
    let emitted = emit_rust(&layout);
    assert!(
        emitted.contains("numavisor_layout::NicSpec { network: 0, mac: [2, 171, 205, 0, 0, 1] }, // alpha, 02:ab:cd:00:00:01"),
        "{emitted}"
    );
}
