//! Running a vCPU: VMRUN, decode the exit once, handle it, repeat — until the partition
//! stops. Everything a guest can cause ends in [`Next::Stop`] for its own partition at worst;
//! nothing here panics on guest input.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use core::arch::x86_64::__cpuid_count;
use core::sync::atomic::{AtomicBool, Ordering};

use numavisor_policy::guest::start_info;
use numavisor_policy::memory::{BlockSize, Usage};
use numavisor_policy::vmexit::{IoAccess, VmExit};
use spin::Mutex;

use super::{emit_console, stop_or_restart, take_assignment, Partition, StopKind, FRAMES};
use crate::virt::svm::{self, vcpu::SvmVcpu, vmcb::Vmcb};
use crate::virt::{GuestRegisters, Vcpu};

/// The 16550's ports.
const UART_BASE: u16 = 0x3F8;
/// The debug-exit port tests use (QEMU's isa-debug-exit default).
const DEBUG_EXIT_PORT: u16 = 0xF4;
/// The guest's ACPI PM1a control register (acpi-tables' PM block at 0x600, +4).
const PM1A_CONTROL: u16 = 0x604;
const SLP_EN: u64 = 1 << 13;

/// What the run loop does after an exit.
enum Next {
    Resume,
    Stop {
        kind: StopKind,
        reason: &'static str,
        detail: String,
    },
}

/// Each CPU's VMRUN host save area, by APIC ID.
static HOST_SAVE_AREAS: Mutex<BTreeMap<u32, u64>> = Mutex::new(BTreeMap::new());

/// Runs the vCPU queued for this CPU, if any, until its partition stops. Returns whether
/// there was one.
pub fn run_assigned_vcpu(apic_id: u32) -> bool {
    let Some((partition, vcpu)) = take_assignment(apic_id) else {
        return false;
    };
    if !enable_svm(apic_id) {
        let _ = stop_or_restart(
            partition,
            StopKind::Fault,
            "no-memory",
            "no memory for this CPU's VMRUN save area",
        );
        return true;
    }
    run_vcpu(partition, vcpu);
    true
}

fn enable_svm(apic_id: u32) -> bool {
    let mut areas = HOST_SAVE_AREAS.lock();
    if areas.contains_key(&apic_id) {
        return true;
    }
    let page = FRAMES.lock().as_mut().and_then(|frames| {
        let order: alloc::vec::Vec<usize> = (0..frames.node_count()).collect();
        frames
            .allocate_near(&order, BlockSize::Size4K, Usage::Hypervisor)
            .ok()
    });
    let Some((page, _)) = page else {
        return false;
    };
    svm::enable_on_this_cpu(page);
    areas.insert(apic_id, page);
    true
}

fn fresh_registers() -> GuestRegisters {
    GuestRegisters {
        rbx: start_info::START_INFO_GPA,
        ..GuestRegisters::default()
    }
}

fn run_vcpu(partition: &Partition, vcpu: usize) {
    let Some(page) = partition.state.lock().vmcbs.get(vcpu).copied() else {
        return;
    };
    // SAFETY: the VMCB page belongs to this vCPU, which runs only here.
    let vmcb = unsafe { Vmcb::new(page) };
    let next_rip_save = NEXT_RIP_SAVE.load(Ordering::Relaxed);
    let mut cpu = SvmVcpu::new(vmcb, fresh_registers(), next_rip_save);
    let mut exits: u64 = 0;
    if vcpu == 0 {
        let mut state = partition.state.lock();
        state
            .first_entry_tsc
            .get_or_insert(crate::platform::cpu::tsc::now());
    }
    loop {
        let exit = cpu.run();
        exits += 1;
        match handle(partition, vcpu, &mut cpu, exit) {
            Next::Resume => {}
            Next::Stop {
                kind,
                reason,
                detail,
            } => {
                {
                    let mut state = partition.state.lock();
                    state.exits += core::mem::take(&mut exits);
                    state.stop_tsc = crate::platform::cpu::tsc::now();
                }
                if !stop_or_restart(partition, kind, reason, &detail) {
                    return;
                }
                cpu.reset_registers(fresh_registers());
            }
        }
    }
}

/// Whether the CPU saves the next RIP on intercepts (SVM NRIPS); QEMU's emulator does not,
/// so instruction lengths are known constants there.
static NEXT_RIP_SAVE: AtomicBool = AtomicBool::new(false);

/// Records what `svm::detect` found, once at boot.
pub fn set_next_rip_save(available: bool) {
    NEXT_RIP_SAVE.store(available, Ordering::Relaxed);
}

/// " while delivering vector N" when the exit interrupted an event delivery.
fn during_event(cpu: &impl Vcpu) -> String {
    match cpu.interrupted_event() {
        Some(vector) => format!(" while delivering vector {vector}"),
        None => String::new(),
    }
}

fn handle(partition: &Partition, vcpu: usize, cpu: &mut impl Vcpu, exit: VmExit) -> Next {
    let rip = cpu.rip();
    match exit {
        VmExit::Io(access) => handle_io(partition, cpu, access),
        VmExit::Cpuid => {
            emulate_cpuid(vcpu, cpu);
            cpu.set_rip(cpu.rip_after(2));
            Next::Resume
        }
        VmExit::Msr { write } => {
            emulate_msr(vcpu, cpu, write);
            cpu.set_rip(cpu.rip_after(2));
            Next::Resume
        }
        VmExit::Vmmcall => {
            cpu.set_rax(u64::MAX); // no hypercalls yet: "unknown call"
            cpu.set_rip(cpu.rip_after(3));
            Next::Resume
        }
        VmExit::Hlt => Next::Stop {
            kind: StopKind::Shutdown,
            reason: "halted",
            detail: format!("HLT at RIP {rip:#x}; no interrupt can wake it (none are emulated yet)"),
        },
        VmExit::Shutdown => Next::Stop {
            kind: StopKind::Fault,
            reason: "triple-fault",
            detail: format!("shutdown (triple fault) at RIP {rip:#x}{}", during_event(cpu)),
        },
        VmExit::NestedPageFault { gpa, error_code } => Next::Stop {
            kind: StopKind::Fault,
            reason: "outside-memory",
            detail: format!(
                "access to guest-physical {gpa:#x} outside its memory at RIP {rip:#x} (exit code 0x400, error code {error_code:#x}){}",
                during_event(cpu)
            ),
        },
        VmExit::InvalidState => Next::Stop {
            kind: StopKind::Fault,
            reason: "invalid-state",
            detail: format!("VMRUN refused the guest state (exit code -1) at RIP {rip:#x}"),
        },
        VmExit::Forbidden { code } => Next::Stop {
            kind: StopKind::Fault,
            reason: "forbidden-instruction",
            detail: format!("exit code {code:#x} at RIP {rip:#x}: nested virtualization is not offered"),
        },
        VmExit::Unexpected { code, info1, info2 } => Next::Stop {
            kind: StopKind::Fault,
            reason: "unexpected-exit",
            detail: format!("exit code {code:#x} (info1 {info1:#x}, info2 {info2:#x}) at RIP {rip:#x}"),
        },
    }
}

fn handle_io(partition: &Partition, cpu: &mut impl Vcpu, access: IoAccess) -> Next {
    if access.string {
        return Next::Stop {
            kind: StopKind::Fault,
            reason: "unsupported-io",
            detail: format!(
                "string I/O to port {:#x} at RIP {:#x} is not emulated",
                access.port,
                cpu.rip()
            ),
        };
    }
    let mask = match access.size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    };
    let value = cpu.rax() & mask;
    let next = match (access.port, access.write) {
        (port, true) if (UART_BASE..UART_BASE + 8).contains(&port) => {
            let line = partition
                .state
                .lock()
                .uart
                .write(port - UART_BASE, value as u8);
            if let Some(line) = line {
                emit_console(partition.name(), &line);
            }
            Next::Resume
        }
        (port, false) if (UART_BASE..UART_BASE + 8).contains(&port) => {
            let byte = partition.state.lock().uart.read(port - UART_BASE);
            cpu.set_rax((cpu.rax() & !0xFF) | byte as u64);
            Next::Resume
        }
        (DEBUG_EXIT_PORT, true) => Next::Stop {
            kind: StopKind::Shutdown,
            reason: "exit",
            detail: format!("wrote {value} to the debug-exit port"),
        },
        (PM1A_CONTROL, true) if value & SLP_EN != 0 => Next::Stop {
            kind: StopKind::Shutdown,
            reason: "power-off",
            detail: format!("ACPI sleep request (PM1a_CNT {value:#x})"),
        },
        (PM1A_CONTROL, false) => {
            cpu.set_rax((cpu.rax() & !mask) | 1); // SCI_EN: the guest runs in ACPI mode
            Next::Resume
        }
        (_, false) => {
            cpu.set_rax(cpu.rax() | mask); // nothing there: the bus floats high
            Next::Resume
        }
        (_, true) => Next::Resume,
    };
    if matches!(next, Next::Resume) {
        cpu.set_rip(access.next_rip);
    }
    next
}

/// CPUID as the guest sees it: the host's, without virtualization features, with the
/// hypervisor bit and numavisor's leaf 0x40000000, and the vCPU's own APIC ID.
fn emulate_cpuid(vcpu: usize, cpu: &mut impl Vcpu) {
    let leaf = cpu.rax() as u32;
    let subleaf = cpu.registers().rcx as u32;
    let (mut a, mut b, mut c, mut d) = if (0x4000_0000..0x5000_0000).contains(&leaf) {
        (0, 0, 0, 0)
    } else {
        let r = __cpuid_count(leaf, subleaf);
        (r.eax, r.ebx, r.ecx, r.edx)
    };
    match leaf {
        1 => {
            c &= !(1 << 5); // VMX
            c |= 1 << 31; // running under a hypervisor
            b = (b & 0x00FF_FFFF) | ((vcpu as u32) << 24);
        }
        0xB | 0x1F => d = vcpu as u32,
        0x4000_0000 => {
            a = 0x4000_0000;
            let signature = *b"numavisor\0\0\0";
            b = u32::from_le_bytes([signature[0], signature[1], signature[2], signature[3]]);
            c = u32::from_le_bytes([signature[4], signature[5], signature[6], signature[7]]);
            d = u32::from_le_bytes([signature[8], signature[9], signature[10], signature[11]]);
        }
        0x8000_0001 => c &= !(1 << 2), // SVM
        0x8000_000A => (a, b, c, d) = (0, 0, 0, 0),
        _ => {}
    }
    cpu.set_rax(a as u64);
    let registers = cpu.registers();
    registers.rbx = b as u64;
    registers.rcx = c as u64;
    registers.rdx = d as u64;
}

const MSR_TSC: u32 = 0x10;
const MSR_APIC_BASE: u32 = 0x1B;
const MSR_MTRR_CAP: u32 = 0xFE;
const MSR_PAT: u32 = 0x277;
const MSR_MTRR_DEF_TYPE: u32 = 0x2FF;
const MSR_EFER: u32 = 0xC000_0080;

/// The MSRs numavisor intercepts: EFER (SVME must stay set), PAT (kept in the VMCB), the
/// APIC base; the rest read as zero and ignore writes.
fn emulate_msr(vcpu: usize, cpu: &mut impl Vcpu, write: bool) {
    let msr = cpu.registers().rcx as u32;
    if write {
        let value = (cpu.registers().rdx << 32) | (cpu.rax() & 0xFFFF_FFFF);
        match msr {
            MSR_EFER => cpu.set_efer(value),
            MSR_PAT => cpu.set_pat(value),
            _ => log::debug!("guest wrote MSR {msr:#x} = {value:#x}; ignored"),
        }
        return;
    }
    let value = match msr {
        MSR_EFER => cpu.efer(),
        MSR_PAT => cpu.pat(),
        // SAFETY: RDTSC has no side effects.
        MSR_TSC => unsafe { core::arch::x86_64::_rdtsc() },
        MSR_APIC_BASE => 0xFEE0_0000 | (1 << 11) | if vcpu == 0 { 1 << 8 } else { 0 },
        MSR_MTRR_CAP => 0,
        MSR_MTRR_DEF_TYPE => 0x806, // MTRRs on, default write-back
        _ => 0,
    };
    cpu.set_rax(value & 0xFFFF_FFFF);
    cpu.registers().rdx = value >> 32;
}
