//! The shared exit handler driven by a fake vCPU and a fake partition: what a guest's port,
//! MSR, CPUID, MMIO and HLT exits do, and that malformed or forbidden ones get a defined
//! answer (a #GP, or a stop with a reason) instead of a panic.

use crate::devices::device::DeviceId;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::*;
use crate::devices::lapic::{IpiDelivery, LocalApic};
use crate::hypercall::{Call, Reply, Status};
use crate::vmexit::GuestInstruction;
use crate::vmm::guest_regs::GuestRegisters;
use crate::vmm::guest_walk::PagingState;
use crate::vmm::mmio_decode::CpuMode;
use crate::vmm::platform::tests::pc;
use crate::vmm::vcpu::{EntryState, NmiExit};

mod nmi;

#[derive(Default)]
struct FakeVcpu {
    /// The guest's paging, where a test gives it page tables.
    paging: Option<PagingState>,
    registers: GuestRegisters,
    rip: u64,
    efer: u64,
    pat: u64,
    xcr0: u64,
    injected: Vec<Event>,
    cpl: u8,
    /// TSC_AUX as loaded into "the CPU".
    tsc_aux: u32,
    /// A CPU whose guest writes CR8 without an exit (SVM's V_TPR): the class it holds, and
    /// the class last loaded from the local APIC. `None`: every CR8 access exits.
    v_tpr: Option<u8>,
    loaded_tpr: u8,
    /// In an interrupt shadow (STI, MOV SS).
    shadow: bool,
    /// VMX's "blocking by NMI" where the fake plays a CPU that keeps it; None: SVM.
    nmi_blocking: Option<bool>,
    /// The NMI exit armed last.
    nmi_exit: Option<NmiExit>,
}

impl Vcpu for FakeVcpu {
    fn run(&mut self) -> VmExit {
        VmExit::Hlt
    }
    fn registers(&mut self) -> &mut GuestRegisters {
        &mut self.registers
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn efer(&self) -> u64 {
        self.efer
    }
    fn set_efer(&mut self, efer: u64) {
        self.efer = efer;
    }
    fn pat(&self) -> u64 {
        self.pat
    }
    fn set_pat(&mut self, pat: u64) {
        self.pat = pat;
    }
    fn paging(&self) -> PagingState {
        // Paging off unless a test turns it on: guest-virtual = guest-physical, which keeps
        // the fetch simple.
        self.paging.unwrap_or(PagingState {
            cr0: 1,
            cr3: 0,
            cr4: 0,
            efer: self.efer,
        })
    }
    fn cpu_mode(&self) -> CpuMode {
        CpuMode::Protected32
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn code_base(&self) -> u64 {
        0
    }
    fn interrupts_enabled(&self) -> bool {
        true
    }
    fn interruptible(&self) -> bool {
        true
    }
    fn interrupt_shadow(&self) -> bool {
        self.shadow
    }
    fn cpu_nmi_blocking(&self) -> Option<bool> {
        self.nmi_blocking
    }
    fn set_nmi_exit(&mut self, exit: NmiExit) {
        self.nmi_exit = Some(exit);
    }
    fn next_rip(&self) -> Option<u64> {
        None
    }
    fn interrupted_event(&self) -> Option<u8> {
        None
    }
    fn event_queued(&self) -> bool {
        !self.injected.is_empty()
    }
    fn inject(&mut self, event: Event) {
        self.injected.push(event);
    }
    fn set_interrupt_window(&mut self, _wanted: bool) {}
    fn take_untaken_interrupt(&mut self) -> Option<u8> {
        None
    }
    fn set_tsc_offset(&mut self, _offset: u64) {}
    fn set_tsc_aux(&mut self, value: u32) {
        self.tsc_aux = value;
    }
    fn take_task_priority_write(&mut self) -> Option<u8> {
        let class = self.v_tpr.filter(|&c| c != self.loaded_tpr)?;
        self.loaded_tpr = class;
        Some(class)
    }
    fn load_task_priority(&mut self, class: u8) {
        if let Some(v_tpr) = &mut self.v_tpr {
            *v_tpr = class;
            self.loaded_tpr = class;
        }
    }
    fn enter(&mut self, _state: EntryState) {}
    fn xsetbv(&mut self, index: u32, value: u64) -> bool {
        let valid = crate::vmm::xcr0::valid_xsetbv(index, value, 0b111);
        if valid {
            self.xcr0 = value;
        }
        valid
    }
}

struct FakeMemory(BTreeMap<u64, u8>);

impl GuestPhysical for FakeMemory {
    fn read_u8(&self, gpa: u64) -> Option<u8> {
        self.0.get(&gpa).copied()
    }
}

struct FakeMachine {
    memory: FakeMemory,
    lapics: RefCell<Vec<LocalApic>>,
    devices: RefCell<PlatformDevices>,
    ipis: RefCell<Vec<(usize, Ipi)>>,
    deliveries: RefCell<Vec<IoApicDelivery>>,
    console: RefCell<Vec<String>>,
    /// Device work asked of the edge: (vCPU, device, reset).
    served: RefCell<Vec<(usize, DeviceId, bool)>>,
    /// Owed pages and whether the host has a page for each; backed ones leave.
    owed: RefCell<BTreeMap<u64, bool>>,
}

impl FakeMachine {
    fn new() -> FakeMachine {
        FakeMachine {
            memory: FakeMemory(BTreeMap::new()),
            lapics: RefCell::new(alloc::vec![LocalApic::new(
                0,
                true,
                1_000_000_000,
                1_000_000_000
            )]),
            devices: RefCell::new(PlatformDevices::new(pc()).unwrap()),
            ipis: RefCell::new(Vec::new()),
            deliveries: RefCell::new(Vec::new()),
            console: RefCell::new(Vec::new()),
            served: RefCell::new(Vec::new()),
            owed: RefCell::new(BTreeMap::new()),
        }
    }

    /// With a virtio-mmio balloon at 0xFEB0_0000 on pin 5.
    fn with_balloon(self) -> FakeMachine {
        let mut config = pc();
        config.virtio_balloon = Some((0xFEB0_0000, 5));
        *self.devices.borrow_mut() = PlatformDevices::new(config).unwrap();
        self
    }

    /// 32-bit paging under the page directory at `directory`: linear 0x40_0000 (its entry 1)
    /// through the page table at `table`, whose entry 0 maps the page at `page`.
    fn map_linear_400000(self, directory: u64, table: u64, page: u64) -> FakeMachine {
        let present = |at: u64| (at as u32 | 1).to_le_bytes();
        self.code(directory + 4, &present(table))
            .code(table, &present(page))
    }

    /// Places instruction bytes at guest-physical `at`.
    fn code(mut self, at: u64, bytes: &[u8]) -> FakeMachine {
        for (i, &b) in bytes.iter().enumerate() {
            self.memory.0.insert(at + i as u64, b);
        }
        self
    }
}

impl HostCpuid for FakeMachine {
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        match leaf {
            0 => [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65], // "AuthenticAMD"
            1 => [0x00A0_0F11, 0, 0x7ED8_320B | (1 << 5), 0x178B_FBFF], // with VMX (bit 5)
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => [0, 0, 0x0000_0004 | 1, 0x2FD3_FBFF], // SVM (bit 2)
            _ => [0; 4],
        }
    }
}

impl Machine for FakeMachine {
    type Memory = FakeMemory;
    fn memory(&self) -> &FakeMemory {
        &self.memory
    }
    fn with_lapic<R>(&self, vcpu: usize, f: impl FnOnce(&mut LocalApic) -> R) -> R {
        f(&mut self.lapics.borrow_mut()[vcpu])
    }
    fn with_devices<R>(&self, f: impl FnOnce(&mut PlatformDevices) -> R) -> R {
        f(&mut self.devices.borrow_mut())
    }
    fn deliver_ipi(&self, from: usize, ipi: Ipi) {
        self.ipis.borrow_mut().push((from, ipi));
    }
    fn deliver_ioapic(&self, delivery: IoApicDelivery) {
        self.deliveries.borrow_mut().push(delivery);
    }
    fn console(&self, line: &str) {
        self.console.borrow_mut().push(line.into());
    }
    fn hypercall(&self, call: &Call) -> Reply {
        match call {
            Call::GetPartitionId => Reply::ok(7, 0),
            _ => Reply::error(Status::AccessDenied),
        }
    }
    fn serve_device(&self, vcpu: usize, device: DeviceId, reset: bool) {
        self.served.borrow_mut().push((vcpu, device, reset));
    }
    fn back_owed_page(&self, gpa: u64) -> OwedPage {
        let mut owed = self.owed.borrow_mut();
        match owed.get(&(gpa & !0xFFF)) {
            None => OwedPage::NotOwed,
            Some(false) => OwedPage::NoMemory { node: 1 },
            Some(true) => {
                owed.remove(&(gpa & !0xFFF));
                OwedPage::Backed
            }
        }
    }
}

/// 32-bit paging (CR0.PG and PE) with the page directory at `cr3`.
fn paging32(cr3: u64) -> PagingState {
    PagingState {
        cr0: (1 << 31) | 1,
        cr3,
        cr4: 0,
        efer: 0,
    }
}

fn context() -> VcpuContext {
    VcpuContext {
        index: 0,
        cpuid: CpuidPolicy {
            vcpu_index: 0,
            tsc_hz: 1_000_000_000,
            vnode_of_vcpu: alloc::vec![0],
        },
        cpuid_cache: CpuidCache::default(),
        code_page: Default::default(),
        decoded_mmio: Default::default(),
        msrs: MsrState::new(Vendor::Amd),
        vendor: Vendor::Amd,
        nmi: Default::default(),
    }
}

fn out(port: u16, size: u8, next_rip: u64) -> VmExit {
    VmExit::Io(IoAccess {
        port,
        size,
        write: true,
        string: false,
        rep: false,
        next_rip,
    })
}

fn input(port: u16, size: u8, next_rip: u64) -> VmExit {
    VmExit::Io(IoAccess {
        write: false,
        ..match out(port, size, next_rip) {
            VmExit::Io(a) => a,
            _ => unreachable!(),
        }
    })
}

fn stop_reason(next: &Next) -> &'static str {
    match next {
        Next::Stop(request) => request.reason,
        other => panic!("expected a stop, got {other:?}"),
    }
}

#[test]
fn port_output_becomes_console_lines_and_rip_moves_on() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    let mut ctx = context();
    for (i, b) in b"ok\n".iter().enumerate() {
        cpu.registers.rax = *b as u64;
        let next = handle(
            &mut cpu,
            &mut ctx,
            &machine,
            out(0x3F8, 1, 0x100 + i as u64),
            0,
        );
        assert_eq!(next, Next::Resume);
        assert_eq!(cpu.rip, 0x100 + i as u64);
    }
    assert_eq!(machine.console.borrow().as_slice(), ["ok"]);
}

#[test]
fn reads_of_nothing_float_high_and_keep_the_upper_bits() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    cpu.registers.rax = 0x1234_5678_9ABC_DE00;
    handle(&mut cpu, &mut context(), &machine, input(0x2F8, 1, 2), 0);
    assert_eq!(cpu.registers.rax, 0x1234_5678_9ABC_DEFF);
    // IN EAX zero-extends into RAX.
    handle(&mut cpu, &mut context(), &machine, input(0x2F8, 4, 4), 0);
    assert_eq!(cpu.registers.rax, 0xFFFF_FFFF);
}

#[test]
fn guest_power_off_reboot_and_debug_exit_are_stops_of_their_kind() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    let mut ctx = context();
    cpu.registers.rax = (5 << 10) | (1 << 13);
    let next = handle(&mut cpu, &mut ctx, &machine, out(0x604, 2, 9), 0);
    assert!(matches!(&next, Next::Stop(r) if r.kind == StopKind::PowerOff));
    cpu.registers.rax = 0xFE;
    let next = handle(&mut cpu, &mut ctx, &machine, out(0x64, 1, 9), 0);
    assert!(matches!(&next, Next::Stop(r) if r.kind == StopKind::Reboot && r.reason == "reboot"));
    cpu.registers.rax = 3;
    let next = handle(&mut cpu, &mut ctx, &machine, out(0xF4, 1, 9), 0);
    assert!(matches!(&next, Next::Stop(r) if r.kind == StopKind::GuestExit));
    // A stop leaves RIP where it was.
    assert_eq!(cpu.rip, 0);
}

#[test]
fn string_io_stops_the_partition_with_a_reason() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    let exit = VmExit::Io(IoAccess {
        port: 0x3F8,
        size: 1,
        write: true,
        string: true,
        rep: true,
        next_rip: 2,
    });
    assert_eq!(
        stop_reason(&handle(&mut cpu, &mut context(), &machine, exit, 0)),
        "unsupported-io"
    );
}

#[test]
fn cpuid_hides_svm_and_shows_the_hypervisor() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu {
        rip: 0x10,
        ..FakeVcpu::default()
    };
    cpu.registers.rax = 1;
    handle(&mut cpu, &mut context(), &machine, VmExit::Cpuid, 0);
    assert_ne!(cpu.registers.rcx & (1 << 31), 0, "hypervisor bit");
    assert_eq!(cpu.registers.rcx & (1 << 5), 0, "no VMX for the guest");
    assert_eq!(cpu.rip, 0x12, "CPUID is two bytes");
    cpu.registers.rax = 0x8000_0001;
    cpu.registers.rcx = 0;
    handle(&mut cpu, &mut context(), &machine, VmExit::Cpuid, 0);
    assert_eq!(cpu.registers.rcx & (1 << 2), 0, "no SVM for the guest");
}

#[test]
fn unknown_msrs_and_bad_efer_values_raise_gp_without_moving_rip() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu {
        rip: 0x40,
        ..FakeVcpu::default()
    };
    let mut ctx = context();
    cpu.registers.rcx = 0x1234_5678;
    handle(
        &mut cpu,
        &mut ctx,
        &machine,
        VmExit::Msr { write: false },
        0,
    );
    assert_eq!(
        cpu.injected,
        [Event::Exception {
            vector: 13,
            error_code: Some(0)
        }]
    );
    assert_eq!(cpu.rip, 0x40);
    cpu.injected.clear();
    // EFER.SVME: nested virtualization is not offered.
    cpu.registers.rcx = 0xC000_0080;
    cpu.registers.rax = 1 << 12;
    handle(&mut cpu, &mut ctx, &machine, VmExit::Msr { write: true }, 0);
    assert_eq!(cpu.injected.len(), 1);
    assert_eq!(cpu.efer, 0);
    // A valid EFER write goes through and RIP moves past WRMSR.
    cpu.injected.clear();
    cpu.registers.rax = (1 << 8) | (1 << 11);
    handle(&mut cpu, &mut ctx, &machine, VmExit::Msr { write: true }, 0);
    assert!(cpu.injected.is_empty());
    assert_eq!(cpu.efer, (1 << 8) | (1 << 11));
    assert_eq!(cpu.rip, 0x42);
}

#[test]
fn the_tsc_and_the_apic_base_read_through_their_owners() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    let mut ctx = context();
    cpu.registers.rcx = 0x10;
    handle(
        &mut cpu,
        &mut ctx,
        &machine,
        VmExit::Msr { write: false },
        0x1_2345_6789,
    );
    assert_eq!((cpu.registers.rdx, cpu.registers.rax), (1, 0x2345_6789));
    cpu.registers.rcx = 0x1B;
    handle(
        &mut cpu,
        &mut ctx,
        &machine,
        VmExit::Msr { write: false },
        0,
    );
    assert_eq!(cpu.registers.rax & !0xFFF, 0xFEE0_0000);
    assert_ne!(cpu.registers.rax & (1 << 8), 0, "vCPU 0 is the BSP");
}

#[test]
fn hlt_idles_and_moves_past_the_instruction() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu {
        rip: 0x77,
        ..FakeVcpu::default()
    };
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, VmExit::Hlt, 0),
        Next::Halt
    );
    assert_eq!(cpu.rip, 0x78);
}

#[test]
fn mmio_stores_to_the_local_apic_send_ipis() {
    // mov [ebx+0x300], eax (ICR low) at 0x1000: 89 83 00 03 00 00.
    let machine = FakeMachine::new().code(0x1000, &[0x89, 0x83, 0x00, 0x03, 0x00, 0x00]);
    let mut cpu = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    machine.with_lapic(0, |l| {
        l.mmio_write(0xF0, 4, 0x1FF, 0); // software-enable
    });
    cpu.registers.rax = 0x0000_4500; // INIT, assert
    let next = handle(
        &mut cpu,
        &mut context(),
        &machine,
        VmExit::NestedPageFault {
            gpa: 0xFEE0_0300,
            error_code: 0x7,
            walk: false,
        },
        0,
    );
    assert_eq!(next, Next::Resume);
    assert_eq!(cpu.rip, 0x1006);
    let ipis = machine.ipis.borrow();
    assert_eq!(ipis.len(), 1);
    assert_eq!(ipis[0].1.delivery, IpiDelivery::Init);
}

#[test]
fn device_work_reaches_the_machine_through_one_effect() {
    // mov [ebx+0x70], eax (virtio-mmio Status) at 0x1000: 89 43 70.
    let machine = FakeMachine::new()
        .with_balloon()
        .code(0x1000, &[0x89, 0x43, 0x70]);
    let mut cpu = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    cpu.registers.rax = 0; // Status 0: the driver resets the device.
    let fault = VmExit::NestedPageFault {
        gpa: 0xFEB0_0070,
        error_code: 0x7,
        walk: false,
    };
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, fault, 0),
        Next::Resume
    );
    assert_eq!(cpu.rip, 0x1003);
    assert_eq!(
        *machine.served.borrow(),
        alloc::vec![(0, DeviceId::VirtioBalloon, true)]
    );
    // A read of the window is the device's own: the magic value, no work.
    let machine = machine.code(0x2000, &[0x8B, 0x41, 0x00]); // mov eax, [ecx]
    let mut cpu = FakeVcpu {
        rip: 0x2000,
        ..FakeVcpu::default()
    };
    let fault = VmExit::NestedPageFault {
        gpa: 0xFEB0_0000,
        error_code: 0x5,
        walk: false,
    };
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, fault, 0),
        Next::Resume
    );
    assert_eq!(cpu.registers.rax, 0x7472_6976); // "virt"
    assert_eq!(machine.served.borrow().len(), 1);
}

#[test]
fn mmio_loads_from_the_io_apic_fill_the_register() {
    // mov eax, [ecx+0x10] (IOWIN) at 0x2000: 8b 41 10.
    let machine = FakeMachine::new().code(0x2000, &[0x8B, 0x41, 0x10]);
    let mut cpu = FakeVcpu {
        rip: 0x2000,
        ..FakeVcpu::default()
    };
    machine.with_devices(|d| crate::vmm::platform::tests::ioapic_write(d, 0, 4, 1)); // IOREGSEL = VER
    let fault = VmExit::NestedPageFault {
        gpa: 0xFEC0_0010,
        error_code: 0x5,
        walk: false,
    };
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, fault, 0),
        Next::Resume
    );
    assert_eq!(cpu.registers.rax, 0x0017_0011);
    assert_eq!(cpu.rip, 0x2003);
}

#[test]
fn faults_outside_ram_and_devices_stop_the_partition() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    let fault = VmExit::NestedPageFault {
        gpa: 0x4000_0000,
        error_code: 0x4,
        walk: false,
    };
    assert_eq!(
        stop_reason(&handle(&mut cpu, &mut context(), &machine, fault, 0)),
        "outside-memory"
    );
}

#[test]
fn a_touch_of_an_owed_page_backs_it_or_stops_for_want_of_memory() {
    let machine = FakeMachine::new();
    machine.owed.borrow_mut().insert(0x10_0000, true);
    machine.owed.borrow_mut().insert(0x20_0000, false);
    let mut cpu = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    let fault = |gpa| VmExit::NestedPageFault {
        gpa,
        error_code: 0x6,
        walk: false,
    };
    // Backed: the access runs again, RIP unmoved.
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, fault(0x10_0018), 0),
        Next::Resume
    );
    assert_eq!(cpu.rip, 0x1000);
    assert!(machine.owed.borrow().get(&0x10_0000).is_none());
    let Next::Stop(stop) = handle(&mut cpu, &mut context(), &machine, fault(0x20_0FF8), 0) else {
        panic!("an owed page without memory stops the partition");
    };
    assert_eq!(stop.reason, "no-memory");
    assert!(stop.detail.contains("0x200ff8"), "{}", stop.detail);
    assert!(stop.detail.contains("host node 1"), "{}", stop.detail);
    // Not owed: outside its memory, as before.
    assert_eq!(
        stop_reason(&handle(
            &mut cpu,
            &mut context(),
            &machine,
            fault(0x30_0000),
            0
        )),
        "outside-memory"
    );
}

#[test]
fn mmio_by_unreadable_or_undecodable_instructions_stops_with_the_reason() {
    let fault = VmExit::NestedPageFault {
        gpa: 0xFEE0_00B0,
        error_code: 0x7,
        walk: false,
    };
    // No guest RAM at RIP.
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu {
        rip: 0x9000,
        ..FakeVcpu::default()
    };
    assert_eq!(
        stop_reason(&handle(&mut cpu, &mut context(), &machine, fault, 0)),
        "mmio-fetch"
    );
    // A register-form MOV cannot have touched memory; an unknown opcode is not emulated.
    for bytes in [&[0x89u8, 0xC0][..], &[0x0F, 0x0B]] {
        let machine = FakeMachine::new().code(0x9000, bytes);
        let mut cpu = FakeVcpu {
            rip: 0x9000,
            ..FakeVcpu::default()
        };
        assert_eq!(
            stop_reason(&handle(&mut cpu, &mut context(), &machine, fault, 0)),
            "mmio-decode"
        );
    }
}

#[test]
fn forbidden_and_unknown_exits_stop_with_their_reason() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    for (exit, reason) in [
        (VmExit::TripleFault, "triple-fault"),
        (VmExit::InvalidState, "invalid-state"),
        (VmExit::Forbidden { code: 0x80 }, "forbidden-instruction"),
        (
            VmExit::Unexpected {
                code: 0x99,
                info1: 0,
                info2: 0,
            },
            "unexpected-exit",
        ),
    ] {
        assert_eq!(
            stop_reason(&handle(&mut cpu, &mut context(), &machine, exit, 0)),
            reason
        );
    }
    for exit in [
        VmExit::PhysicalInterrupt,
        VmExit::PhysicalNmi,
        VmExit::InterruptWindow,
    ] {
        assert_eq!(
            handle(&mut cpu, &mut context(), &machine, exit, 0),
            Next::Resume
        );
    }
}

#[test]
fn prefixed_instructions_are_skipped_whole_without_next_rip() {
    // 2E 2E 0F A2: CPUID behind two segment prefixes; resuming at 0F A2 would run it twice.
    let machine = FakeMachine::new().code(0x3000, &[0x2E, 0x2E, 0x0F, 0xA2, 0x90]);
    let mut cpu = FakeVcpu {
        rip: 0x3000,
        ..FakeVcpu::default()
    };
    handle(&mut cpu, &mut context(), &machine, VmExit::Cpuid, 0);
    assert_eq!(cpu.rip, 0x3004);
    // Two prefixes before HLT: three bytes, exactly.
    let machine = FakeMachine::new().code(0x5000, &[0x66, 0x2E, 0xF4, 0x90]);
    let mut cpu = FakeVcpu {
        rip: 0x5000,
        ..FakeVcpu::default()
    };
    handle(&mut cpu, &mut context(), &machine, VmExit::Hlt, 0);
    assert_eq!(cpu.rip, 0x5003);
    // A run of prefixes longer than any instruction may have is cut at 14 (the most a
    // one-byte opcode may carry within 15 bytes): RIP moves by exactly 15, not past it.
    let machine = FakeMachine::new().code(0x4000, &[0x66; 20]);
    let mut cpu = FakeVcpu {
        rip: 0x4000,
        ..FakeVcpu::default()
    };
    handle(&mut cpu, &mut context(), &machine, VmExit::Hlt, 0);
    assert_eq!(cpu.rip, 0x4000 + 15);
}

#[test]
fn isolation_instructions_get_their_answers() {
    let machine = FakeMachine::new();
    let run = |instruction| {
        let mut cpu = FakeVcpu {
            rip: 0x500,
            ..FakeVcpu::default()
        };
        let next = handle(
            &mut cpu,
            &mut context(),
            &machine,
            VmExit::Instruction(instruction),
            0,
        );
        assert_eq!(next, Next::Resume);
        (cpu.rip, cpu.injected)
    };
    assert_eq!(run(GuestInstruction::CacheFlush), (0x502, vec![]));
    let gp = Event::Exception {
        vector: 13,
        error_code: Some(0),
    };
    let ud = Event::Exception {
        vector: 6,
        error_code: None,
    };
    assert_eq!(run(GuestInstruction::Rdpmc), (0x500, vec![gp]));
    for instruction in [
        GuestInstruction::Rdpru,
        GuestInstruction::Invlpga,
        GuestInstruction::MonitorMwait,
        GuestInstruction::Vmx,
    ] {
        assert_eq!(run(instruction), (0x500, vec![ud]));
    }
    let db = Event::Exception {
        vector: 1,
        error_code: None,
    };
    assert_eq!(run(GuestInstruction::Icebp), (0x501, vec![db]));
}

#[test]
fn xsetbv_sets_a_valid_xcr0_and_refuses_the_rest() {
    let machine = FakeMachine::new().code(0x800, &[0x0F, 0x01, 0xD1]);
    let mut cpu = FakeVcpu {
        rip: 0x800,
        ..FakeVcpu::default()
    };
    cpu.registers.rax = 0b111;
    let exit = VmExit::Instruction(GuestInstruction::Xsetbv);
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, exit, 0),
        Next::Resume
    );
    assert_eq!((cpu.xcr0, cpu.rip), (0b111, 0x803));
    // AVX without SSE: #GP, XCR0 and RIP unchanged.
    cpu.registers.rax = 0b101;
    handle(&mut cpu, &mut context(), &machine, exit, 0);
    assert_eq!((cpu.xcr0, cpu.rip), (0b111, 0x803));
    assert_eq!(
        cpu.injected,
        vec![Event::Exception {
            vector: 13,
            error_code: Some(0)
        }]
    );
}

#[test]
fn cr8_is_the_local_apic_task_priority_class() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu {
        rip: 0x700,
        ..FakeVcpu::default()
    };
    // MOV CR8, RCX with 9: TPR = 0x90.
    cpu.registers.rcx = 9;
    let write = VmExit::Cr8 {
        write: true,
        register: 1,
    };
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, write, 0),
        Next::Resume
    );
    assert_eq!(machine.with_lapic(0, |l| l.task_priority()), 0x90);
    assert_eq!(cpu.rip, 0x703);
    // MOV RAX, CR8 reads the class back.
    let read = VmExit::Cr8 {
        write: false,
        register: 0,
    };
    handle(&mut cpu, &mut context(), &machine, read, 0);
    assert_eq!(cpu.registers.rax, 9);
    // Bits 4..63 are reserved: #GP, nothing changes.
    cpu.registers.rcx = 0x10;
    handle(&mut cpu, &mut context(), &machine, write, 0);
    assert_eq!(machine.with_lapic(0, |l| l.task_priority()), 0x90);
    assert_eq!(
        cpu.injected,
        vec![Event::Exception {
            vector: 13,
            error_code: Some(0)
        }]
    );
}

/// Where the guest writes CR8 without an exit (SVM's V_TPR), what it wrote is the TPR before
/// anything reads it, and the TPR's priority gates what the local APIC offers; a TPR written
/// through the APIC's own register reaches the guest's CR8 at the next entry.
#[test]
fn a_cr8_written_without_an_exit_is_the_task_priority() {
    let machine = FakeMachine::new().code(0x800, &[0x0F, 0xA2]); // CPUID
    machine.with_lapic(0, |l| {
        l.mmio_write(0xF0, 4, 0x1FF, 0); // software-enable
        l.accept(0x51, false);
    });
    let mut cpu = FakeVcpu {
        rip: 0x800,
        v_tpr: Some(0),
        ..FakeVcpu::default()
    };
    let mut ctx = context();
    assert_eq!(machine.with_lapic(0, |l| l.pending_vector()), Some(0x51));
    // The guest ran `mov cr8, 0xF`, then exited for a CPUID.
    cpu.v_tpr = Some(0xF);
    handle(&mut cpu, &mut ctx, &machine, VmExit::Cpuid, 0);
    assert_eq!(machine.with_lapic(0, |l| l.task_priority()), 0xF0);
    assert_eq!(
        machine.with_lapic(0, |l| l.pending_vector()),
        None,
        "class 5 is held back by TPR 0xF0"
    );
    // An exit with CR8 unchanged leaves a TPR written through the register alone.
    machine.with_lapic(0, |l| l.set_task_priority(0x43));
    cpu.rip = 0x800;
    handle(&mut cpu, &mut ctx, &machine, VmExit::Cpuid, 0);
    assert_eq!(machine.with_lapic(0, |l| l.task_priority()), 0x43);
    // The entry path loads the register's class into CR8: the guest reads 4.
    cpu.load_task_priority(machine.with_lapic(0, |l| l.task_priority()) >> 4);
    assert_eq!(cpu.v_tpr, Some(4));
    assert_eq!(machine.with_lapic(0, |l| l.pending_vector()), Some(0x51));
}

/// A `MOV CR8, r` intercepted without decode assists (SVM under QEMU) is decoded from the
/// guest's code: the TPR takes the class and RIP moves past the whole instruction; a reserved
/// value is #GP with RIP unmoved; bytes that are not that instruction stop the partition. (The
/// fake vCPU runs 32-bit code: AMD's LOCK form of CR8; the REX forms are the decoder's tests.)
#[test]
fn an_undecoded_cr8_write_is_decoded_from_the_code() {
    // lock mov cr0, ecx (= mov cr8, ecx) at 0xB00; mov cr3, eax at 0xB20.
    let machine = FakeMachine::new()
        .code(0xB00, &[0xF0, 0x0F, 0x22, 0xC1])
        .code(0xB20, &[0x0F, 0x22, 0xD8]);
    let mut cpu = FakeVcpu {
        rip: 0xB00,
        ..FakeVcpu::default()
    };
    let mut ctx = context();
    cpu.registers.rcx = 6;
    assert_eq!(
        handle(&mut cpu, &mut ctx, &machine, VmExit::MovToCr8, 0),
        Next::Resume
    );
    assert_eq!(machine.with_lapic(0, |l| l.task_priority()), 0x60);
    assert_eq!(cpu.rip, 0xB04);
    cpu.rip = 0xB00;
    cpu.registers.rcx = 0x10;
    handle(&mut cpu, &mut ctx, &machine, VmExit::MovToCr8, 0);
    assert_eq!(cpu.rip, 0xB00);
    assert_eq!(machine.with_lapic(0, |l| l.task_priority()), 0x60);
    assert_eq!(
        cpu.injected,
        vec![Event::Exception {
            vector: 13,
            error_code: Some(0)
        }]
    );
    cpu.rip = 0xB20;
    let next = handle(&mut cpu, &mut ctx, &machine, VmExit::MovToCr8, 0);
    assert_eq!(stop_reason(&next), "cr8-decode");
}

/// Each vCPU's TSC_AUX is its own, loaded into its CPU (RDTSCP and RDPID read the CPU), and
/// RDMSR reads back what that vCPU wrote.
#[test]
fn tsc_aux_is_per_vcpu_and_reaches_the_cpu() {
    let machine = FakeMachine::new();
    machine
        .lapics
        .borrow_mut()
        .push(LocalApic::new(1, false, 1_000_000_000, 1_000_000_000));
    let mut cpus = [FakeVcpu::default(), FakeVcpu::default()];
    let mut contexts = [
        context(),
        VcpuContext {
            index: 1,
            ..context()
        },
    ];
    for (index, (cpu, ctx)) in cpus.iter_mut().zip(&mut contexts).enumerate() {
        // Linux's value: node << 12 | CPU.
        cpu.registers.rcx = 0xC000_0103;
        cpu.registers.rax = (1 << 12) | index as u64;
        handle(cpu, ctx, &machine, VmExit::Msr { write: true }, 0);
        assert_eq!(cpu.tsc_aux, (1 << 12) | index as u32);
    }
    for (index, (cpu, ctx)) in cpus.iter_mut().zip(&mut contexts).enumerate() {
        cpu.registers.rax = 0;
        handle(cpu, ctx, &machine, VmExit::Msr { write: false }, 0);
        assert_eq!(cpu.registers.rax, (1 << 12) | index as u64);
    }
    // Reserved upper half: #GP, the CPU keeps its value.
    cpus[0].registers.rdx = 1;
    handle(
        &mut cpus[0],
        &mut contexts[0],
        &machine,
        VmExit::Msr { write: true },
        0,
    );
    assert_eq!(cpus[0].tsc_aux, 1 << 12);
    assert_eq!(
        cpus[0].injected,
        vec![Event::Exception {
            vector: 13,
            error_code: Some(0)
        }]
    );
}

/// CPUID.1:EDX.APIC reads clear once the guest clears IA32_APIC_BASE.EN, and set again when
/// it sets it.
#[test]
fn cpuid_shows_the_apic_only_while_it_is_enabled() {
    let machine = FakeMachine::new().code(0x900, &[0x0F, 0xA2]);
    let mut cpu = FakeVcpu::default();
    let mut ctx = context();
    let apic_bit = |cpu: &mut FakeVcpu, ctx: &mut VcpuContext| {
        cpu.rip = 0x900;
        cpu.registers.rax = 1;
        handle(cpu, ctx, &machine, VmExit::Cpuid, 0);
        cpu.registers.rdx & (1 << 9) != 0
    };
    assert!(apic_bit(&mut cpu, &mut ctx));
    machine
        .with_lapic(0, |l| l.set_apic_base_msr(0xFEE0_0100))
        .unwrap();
    assert!(!apic_bit(&mut cpu, &mut ctx));
    machine
        .with_lapic(0, |l| l.set_apic_base_msr(0xFEE0_0900))
        .unwrap();
    assert!(apic_bit(&mut cpu, &mut ctx));
}

/// The AMD legacy performance counters read 0 and take writes (kvm-unit-tests clears them
/// before any test); RDMSR and WRMSR complete.
#[test]
fn amd_legacy_performance_counters_complete() {
    let machine = FakeMachine::new().code(0xA00, &[0x0F, 0x30]);
    let mut cpu = FakeVcpu::default();
    let mut ctx = context();
    for msr in 0xC001_0000u64..=0xC001_0007 {
        for write in [true, false] {
            cpu.rip = 0xA00;
            cpu.registers.rcx = msr;
            cpu.registers.rax = 0x1234;
            handle(&mut cpu, &mut ctx, &machine, VmExit::Msr { write }, 0);
            assert_eq!(cpu.rip, 0xA02, "{msr:#x}");
        }
        assert_eq!(cpu.registers.rax, 0, "{msr:#x} reads 0");
    }
    assert!(cpu.injected.is_empty(), "{:?}", cpu.injected);
}

#[test]
fn intercepted_exceptions_are_reflected_into_the_guest() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu {
        rip: 0x600,
        ..FakeVcpu::default()
    };
    let exit = VmExit::Exception {
        vector: 17,
        error_code: Some(0),
    };
    assert_eq!(
        handle(&mut cpu, &mut context(), &machine, exit, 0),
        Next::Resume
    );
    assert_eq!(
        cpu.injected,
        [Event::Exception {
            vector: 17,
            error_code: Some(0)
        }]
    );
    assert_eq!(cpu.rip, 0x600);
}

#[test]
fn a_machine_check_during_the_guest_stops_its_partition() {
    let machine = FakeMachine::new();
    let mut cpu = FakeVcpu::default();
    let exit = VmExit::Exception {
        vector: 18,
        error_code: None,
    };
    assert_eq!(
        stop_reason(&handle(&mut cpu, &mut context(), &machine, exit, 0)),
        "machine-check"
    );
    assert!(
        cpu.injected.is_empty(),
        "a #MC is the host's, never the guest's"
    );
}

#[test]
fn prefixes_across_a_page_boundary_are_counted() {
    // 2E 2E at the end of one page, 0F A2 at the start of the next.
    let machine = FakeMachine::new().code(0x1FFE, &[0x2E, 0x2E, 0x0F, 0xA2]);
    let mut cpu = FakeVcpu {
        rip: 0x1FFE,
        ..FakeVcpu::default()
    };
    handle(&mut cpu, &mut context(), &machine, VmExit::Cpuid, 0);
    assert_eq!(cpu.rip, 0x2002);
}

#[test]
fn hypercalls_answer_at_cpl0_and_raise_ud_elsewhere() {
    let machine = FakeMachine::new().code(0x1000, &[0x0F, 0x01, 0xD9]);
    let mut cpu = FakeVcpu {
        rip: 0x1000,
        ..FakeVcpu::default()
    };
    cpu.registers.rax = 1; // get own partition ID
    cpu.registers.rdx = 0x55;
    let next = handle(&mut cpu, &mut context(), &machine, VmExit::Vmmcall, 0);
    assert_eq!(next, Next::Resume);
    assert_eq!(
        (cpu.registers.rax, cpu.registers.rbx, cpu.registers.rdx),
        (0, 7, 0x55),
        "status in RAX, result in RBX, RDX untouched"
    );
    assert_eq!(cpu.rip, 0x1003);
    // A call the partition may not make: the status, RIP moves on.
    cpu.registers.rax = 5;
    cpu.registers.rbx = 2;
    cpu.registers.rcx = u64::MAX;
    cpu.rip = 0x1000;
    handle(&mut cpu, &mut context(), &machine, VmExit::Vmmcall, 0);
    assert_eq!(cpu.registers.rax, Status::AccessDenied.code());
    // Unknown code: decoded before the machine sees it.
    cpu.registers.rax = 0x7777;
    cpu.rip = 0x1000;
    handle(&mut cpu, &mut context(), &machine, VmExit::Vmmcall, 0);
    assert_eq!(cpu.registers.rax, Status::InvalidHypercallCode.code());
    // CPL 3: #UD, nothing changes.
    cpu.cpl = 3;
    cpu.rip = 0x1000;
    cpu.registers.rax = 1;
    handle(&mut cpu, &mut context(), &machine, VmExit::Vmmcall, 0);
    assert_eq!((cpu.rip, cpu.registers.rax), (0x1000, 1));
    assert_eq!(
        cpu.injected,
        alloc::vec![Event::Exception {
            vector: exception::INVALID_OPCODE,
            error_code: None
        }]
    );
}

/// A guest whose own page tables point into a device page: the CPU's walk, not the
/// instruction, touched the device (hardware would not route a walk to the APIC): the
/// partition stops with the reason, nothing is emulated.
#[test]
fn a_page_walk_into_a_device_stops_the_partition() {
    // mov eax, [ecx+0x30]: would read the APIC version if it were the data access.
    let machine = FakeMachine::new().code(0x2000, &[0x8B, 0x41, 0x30]);
    let mut cpu = FakeVcpu {
        rip: 0x2000,
        ..FakeVcpu::default()
    };
    let fault = VmExit::NestedPageFault {
        gpa: 0xFEE0_0030,
        error_code: (1 << 33) | 0x5,
        walk: true,
    };
    let next = handle(&mut cpu, &mut context(), &machine, fault, 0);
    assert_eq!(stop_reason(&next), "mmio-page-walk");
    assert_eq!(cpu.rip, 0x2000);
    assert_eq!(cpu.registers.rax, 0);
}

/// An access that runs past the end of a device's window (8 bytes at the last dword of the
/// APIC page, 4 bytes at the I/O APIC page's last 2) is not the device's alone: the partition
/// stops with the reason; one that ends at the window's last byte is emulated.
#[test]
fn an_access_across_the_end_of_a_device_window_stops_the_partition() {
    // mov rax, [rcx] is 48 8B 01 in 64-bit code; the fake runs 32-bit code, where
    // movq-like 8-byte loads are not in the decoder: use a 4-byte load across the end instead.
    let machine = FakeMachine::new().code(0x3000, &[0x8B, 0x01]); // mov eax, [ecx]
    for (gpa, stops) in [
        (0xFEE0_0FFE, true),
        (0xFEC0_0FFD, true),
        (0xFEE0_0FFC, false),
    ] {
        let mut cpu = FakeVcpu {
            rip: 0x3000,
            ..FakeVcpu::default()
        };
        let fault = VmExit::NestedPageFault {
            gpa,
            error_code: 0x5,
            walk: false,
        };
        let next = handle(&mut cpu, &mut context(), &machine, fault, 0);
        if stops {
            assert_eq!(stop_reason(&next), "mmio-crossing", "{gpa:#x}");
            assert_eq!(cpu.rip, 0x3000);
        } else {
            assert_eq!(next, Next::Resume, "{gpa:#x}");
            assert_eq!(cpu.rip, 0x3002);
        }
    }
}

/// Skipping an intercepted instruction without next-RIP save keeps its code page's
/// translation between exits: a remapped page is still read through the old translation while
/// the intercepted opcode is there (as a TLB would), and walked again once it is not.
#[test]
fn the_code_page_translation_is_kept_and_checked() {
    // 32-bit paging: CR3 = PD at 0x10000; linear 0x40_0000 (PDE 1) -> PT at 0x11000, whose
    // entry 0 maps page A (0x20000). CPUID at linear 0x40_0123.
    let machine = FakeMachine::new()
        .map_linear_400000(0x10000, 0x11000, 0x20000)
        .code(0x20123, &[0x0F, 0xA2])
        .code(0x30123, &[0x2E, 0x0F, 0xA2]);
    let mut cpu = FakeVcpu {
        rip: 0x40_0123,
        paging: Some(paging32(0x10000)),
        ..FakeVcpu::default()
    };
    let mut ctx = context();
    let cpuid_at = |cpu: &mut FakeVcpu, ctx: &mut VcpuContext, machine: &FakeMachine| {
        cpu.rip = 0x40_0123;
        cpu.registers.rax = 0;
        handle(cpu, ctx, machine, VmExit::Cpuid, 0);
        cpu.rip - 0x40_0123
    };
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 2);
    // The guest maps page B (a prefixed CPUID) there without invalidating: the kept
    // translation still finds CPUID in page A.
    let machine = machine.map_linear_400000(0x10000, 0x11000, 0x30000);
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 2);
    // Page A no longer holds it: walked again, page B's three bytes.
    let machine = machine.code(0x20123, &[0x90, 0x90]);
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 3);
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 3);
    // The last unprefixed instruction is recognised by its opcode byte alone; rewritten in
    // place with a prefix, it is read again and its new length found.
    let machine = machine
        .map_linear_400000(0x10000, 0x11000, 0x20000)
        .code(0x20123, &[0x0F, 0xA2]);
    let mut ctx = context();
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 2);
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 2);
    let machine = machine.code(0x20123, &[0x66, 0x0F, 0xA2]);
    assert_eq!(cpuid_at(&mut cpu, &mut ctx, &machine), 3);
}

/// Two processes run different programs at one linear address: an unprefixed CPUID skipped in
/// one must not make the other's prefixed CPUID there look unprefixed (its first byte, read
/// through the first one's translation, is still CPUID's opcode).
#[test]
fn a_skip_in_one_address_space_does_not_decide_another_at_the_same_address() {
    // 32-bit paging. Process A: CR3 0x10000 -> PT 0x11000 -> page 0x20000, CPUID (0F A2)
    // at linear 0x40_0123. Process B: CR3 0x50000 -> PT 0x51000 -> page 0x60000, a CPUID
    // behind an operand-size prefix (66 0F A2) at the same linear address.
    let machine = FakeMachine::new()
        .map_linear_400000(0x10000, 0x11000, 0x20000)
        .code(0x20123, &[0x0F, 0xA2])
        .map_linear_400000(0x50000, 0x51000, 0x60000)
        .code(0x60123, &[0x66, 0x0F, 0xA2]);
    let mut cpu = FakeVcpu::default();
    let mut ctx = context();
    let mut cpuid_in = |cr3| {
        cpu.paging = Some(paging32(cr3));
        cpu.rip = 0x40_0123;
        cpu.registers.rax = 0;
        handle(&mut cpu, &mut ctx, &machine, VmExit::Cpuid, 0);
        cpu.rip - 0x40_0123
    };
    for _ in 0..3 {
        assert_eq!(cpuid_in(0x10000), 2, "process A: 0F A2");
        assert_eq!(cpuid_in(0x50000), 3, "process B: 66 0F A2");
    }
}
