//! Handling a decoded VM exit, the same way for every backend: port I/O and MMIO go to the
//! partition's devices, CPUID and MSRs follow the partition's policy, HLT idles, and whatever
//! the guest may not do stops its own partition with a reason — never the hypervisor.
//!
//! The handler reaches the partition's shared state only through [`Machine`], which the
//! firmware implements over its locks and host tests implement over plain data.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::cpuid::{self, CpuidCache, CpuidPolicy, HostCpuid, Vendor};
use super::guest_walk::{self, GuestPhysical, PagingState};
use super::mmio_cache::DecodedMmio;
use super::mmio_decode::{self, CpuMode, MmioInstruction, MmioKind};
use super::msr::{efer_update, MsrAction, MsrRead, MsrState};
use super::nmi::NmiState;
use super::platform::{MmioTarget, PlatformDevices};
use super::skip::{skip, CodePage, Opcode};
use super::vcpu::{exception, Event, Vcpu};
use crate::devices::device::{Device, DeviceId, Effect, Effects};
use crate::devices::ioapic::IoApicDelivery;
use crate::devices::lapic::{Ipi, LapicEffect, LocalApic};
use crate::devices::pci_host::{InterruptRoute, PciMappings};
use crate::hypercall::{Call, Reply};
use crate::vmexit::{GuestInstruction, IoAccess, VmExit};

/// Why a partition should stop (or restart, per its layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// The guest ended itself through the debug-exit port (`on_shutdown` applies).
    GuestExit,
    /// ACPI soft-off: the partition stops.
    PowerOff,
    /// The guest reset its platform (keyboard controller, reset register, triple fault is a
    /// [`StopKind::Fault`]): `on_shutdown` decides between a restart and a stop.
    Reboot,
    /// The guest did something it may not (`on_fault` applies).
    Fault,
    /// The operator asked for it on the monitor shell: a restart (whatever the layout's
    /// `on_shutdown`/`restart_limit` say) or a stop for good.
    Operator { restart: bool },
}

/// A request to stop the partition, with a reason for the report and a human detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopRequest {
    pub kind: StopKind,
    pub reason: &'static str,
    pub detail: String,
}

/// What the vCPU loop does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Enter the guest again.
    Resume,
    /// The guest halted: idle until it has an interrupt to take.
    Halt,
    /// Stop (or restart) the partition.
    Stop(StopRequest),
}

impl Next {
    fn stop(kind: StopKind, reason: &'static str, detail: String) -> Next {
        Next::Stop(StopRequest {
            kind,
            reason,
            detail,
        })
    }
}

/// The partition around one vCPU, as the exit handler needs it.
pub trait Machine: HostCpuid {
    /// Guest RAM, for fetching instructions.
    type Memory: GuestPhysical;
    fn memory(&self) -> &Self::Memory;
    /// Runs `f` on the local APIC of vCPU `vcpu` (locked for the call).
    fn with_lapic<R>(&self, vcpu: usize, f: impl FnOnce(&mut LocalApic) -> R) -> R;
    /// Runs `f` on the partition's shared devices (locked for the call).
    fn with_devices<R>(&self, f: impl FnOnce(&mut PlatformDevices) -> R) -> R;
    /// Sends an IPI from vCPU `from` to the vCPUs it names (and wakes them).
    fn deliver_ipi(&self, from: usize, ipi: Ipi);
    /// Delivers an I/O APIC message to the vCPUs it names (and wakes them).
    fn deliver_ioapic(&self, delivery: IoApicDelivery);
    /// A finished line of guest console output.
    fn console(&self, line: &str);
    /// Answers a decoded hypercall of this partition (`docs/hypercalls.md`).
    fn hypercall(&self, call: &Call) -> Reply;

    /// Carries out, for vCPU `vcpu`, what device `device` asked of the hypervisor's edge
    /// ([`Effect::QueueWork`]: its queues have work; [`Effect::DriverReset`]: give back what
    /// the old driver held). The default does nothing: a machine whose devices need no edge.
    fn serve_device(&self, vcpu: usize, device: DeviceId, reset: bool) {
        let _ = (vcpu, device, reset);
    }

    /// The guest touched guest-physical `gpa`, which no device claims and no SLAT entry maps:
    /// a RAM page its balloon gave back while the host had none to back it is backed now.
    /// The default: no page is ever owed.
    fn back_owed_page(&self, gpa: u64) -> OwedPage {
        let _ = gpa;
        OwedPage::NotOwed
    }

    /// Maps a passed-through function's BARs as `mappings` says, for vCPU `vcpu`
    /// ([`Effect::PciMappings`]). The default does nothing: a machine without passthrough.
    fn pci_mappings(&self, vcpu: usize, mappings: PciMappings) {
        let _ = (vcpu, mappings);
    }

    /// Programs the physical messages of passed-through functions whose guest routes changed
    /// ([`Effect::PciInterrupts`]). The default does nothing: a machine without passthrough.
    fn pci_interrupts(&self, vcpu: usize, routes: Vec<InterruptRoute>) {
        let _ = (vcpu, routes);
    }
}

/// What [`Machine::back_owed_page`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwedPage {
    /// Not an owed page: the access is outside the guest's memory.
    NotOwed,
    /// It was owed and is mapped now: the guest runs the access again.
    Backed,
    /// It is owed and host node `node` still has no free page.
    NoMemory { node: usize },
}

/// What one vCPU carries between exits besides its backend state.
#[derive(Clone, Debug)]
pub struct VcpuContext {
    /// The vCPU's index in its partition.
    pub index: usize,
    /// Its CPUID view.
    pub cpuid: CpuidPolicy,
    /// The CPUID answers it got so far.
    pub cpuid_cache: CpuidCache,
    /// Where its code was at the last instruction exit ([`skip`]).
    pub code_page: CodePage,
    /// The MMIO instructions it decoded lately.
    pub decoded_mmio: DecodedMmio,
    /// Its emulated MSRs.
    pub msrs: MsrState,
    /// The CPU vendor the guest sees (EFER rules differ).
    pub vendor: Vendor,
    /// Its pending NMI and NMI handler (`vmm::nmi`).
    pub nmi: NmiState,
}

/// The MSRs the local APIC model answers (IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC).
const MSR_APIC_BASE: u32 = 0x1B;
const MSR_TSC_DEADLINE: u32 = 0x6E0;
const X2APIC_FIRST: u32 = 0x800;
const X2APIC_LAST: u32 = 0x8FF;

/// The intercepted instructions RIP moves past, by opcode (SDM vol. 2; `0F 30`/`0F 32`
/// WRMSR/RDMSR, `0F 01 D9`/`0F 01 C1` VMMCALL/VMCALL, `0F 09`/`0F 08` WBINVD/INVD, `0F 01 D1`
/// XSETBV, `0F 22`/`0F 20` MOV CR8 with its REX counted as a prefix).
const CPUID: Opcode = Opcode {
    first: 0x0F,
    length: 2,
};
const MSR_ACCESS: Opcode = CPUID;
const HLT: Opcode = Opcode {
    first: 0xF4,
    length: 1,
};
const HYPERCALL: Opcode = Opcode {
    first: 0x0F,
    length: 3,
};
const CACHE_FLUSH: Opcode = CPUID;
const XSETBV: Opcode = HYPERCALL;
const ICEBP: Opcode = Opcode {
    first: 0xF1,
    length: 1,
};
const MOV_CR8: Opcode = HYPERCALL;

/// Handles `exit` of the vCPU `cpu` at guest TSC `now`.
///
/// Inlined into the vCPU loop: the common exits' handlers are a few instructions, and a call
/// with this many arguments would cost them a fifth more.
#[inline(always)]
pub fn handle<V: Vcpu, M: Machine>(
    cpu: &mut V,
    context: &mut VcpuContext,
    machine: &M,
    exit: VmExit,
    now: u64,
) -> Next {
    // CR8 written without an exit (SVM's V_TPR) is the local APIC's TPR from now on (SDM vol.
    // 3A §11.8.6.1: MOV CR8 sets TPR[7:4] and clears TPR[3:0]), before anything reads it.
    if let Some(class) = cpu.take_task_priority_write() {
        machine.with_lapic(context.index, |l| l.set_task_priority(class << 4));
    }
    let rip = cpu.rip();
    context.nmi.exited_at(rip);
    match exit {
        VmExit::Io(access) => handle_io(cpu, context, machine, access, now),
        VmExit::Cpuid => {
            let registers = cpu.registers();
            let (leaf, subleaf) = (registers.rax as u32, registers.rcx as u32);
            let policy = &context.cpuid;
            let out = context.cpuid_cache.answer(leaf, subleaf, || {
                cpuid::emulate(machine, policy, leaf, subleaf)
            });
            // OSXSAVE and OSPKE mirror the guest's own CR4, and the APIC bit its
            // IA32_APIC_BASE.EN, as on hardware (only leaf 1 asks the APIC).
            let guest = cpuid::GuestState {
                cr4: cpu.paging().cr4,
                apic_enabled: leaf != 1 || machine.with_lapic(context.index, |l| l.enabled()),
            };
            let out = cpuid::apply_guest_state(leaf, subleaf, out, guest);
            let registers = cpu.registers();
            registers.rax = out[0] as u64;
            registers.rbx = out[1] as u64;
            registers.rcx = out[2] as u64;
            registers.rdx = out[3] as u64;
            skip(cpu, &mut context.code_page, machine.memory(), CPUID);
            Next::Resume
        }
        VmExit::Msr { write } => handle_msr(cpu, context, machine, write, now),
        VmExit::Hlt => {
            skip(cpu, &mut context.code_page, machine.memory(), HLT);
            Next::Halt
        }
        VmExit::Vmmcall => handle_hypercall(cpu, context, machine),
        VmExit::Exception {
            vector: exception::MACHINE_CHECK,
            ..
        } => Next::stop(
            StopKind::Fault,
            "machine-check",
            format!(
                "a machine check arrived while the partition ran (RIP {rip:#x}): its memory or CPU may be bad"
            ),
        ),
        VmExit::Exception { vector, error_code } => {
            // Intercepted only so its delivery cannot chain in microcode: the guest gets it,
            // delivered by the hypervisor once.
            cpu.inject(Event::Exception { vector, error_code });
            Next::Resume
        }
        VmExit::Instruction(instruction) => handle_instruction(cpu, context, machine, instruction),
        VmExit::Cr8 { write, register } => handle_cr8(cpu, context, machine, write, register),
        VmExit::MovToCr8 => handle_mov_to_cr8(cpu, context, machine),
        VmExit::PhysicalInterrupt
        | VmExit::PhysicalNmi
        | VmExit::InterruptWindow
        | VmExit::NmiWindow => Next::Resume,
        VmExit::Iret => {
            context.nmi.iret_at(rip);
            Next::Resume
        }
        VmExit::TripleFault => Next::stop(
            StopKind::Fault,
            "triple-fault",
            format!(
                "shutdown (triple fault) at RIP {rip:#x}{}{}",
                during_event(cpu),
                fault_state(cpu)
            ),
        ),
        VmExit::NestedPageFault {
            gpa,
            error_code,
            walk,
        } => {
            match machine.with_devices(|d| d.mmio_device(gpa)) {
                // The guest's page tables point into a device: no device answers a page walk
                // (and emulating it as the instruction's access would be wrong).
                Some(target) if walk => Next::stop(
                    StopKind::Fault,
                    "mmio-page-walk",
                    format!(
                        "the page-table walk for the instruction at RIP {rip:#x} read {:?}+{:#x}: the guest's page tables point into a device (error code {error_code:#x})",
                        target.device, target.offset
                    ),
                ),
                Some(target) => handle_mmio(cpu, context, machine, target, now),
                None => match machine.back_owed_page(gpa) {
                    OwedPage::Backed => Next::Resume,
                    OwedPage::NoMemory { node } => Next::stop(
                        StopKind::Fault,
                        "no-memory",
                        format!(
                            "touched guest-physical {gpa:#x} at RIP {rip:#x}, a page its balloon gave back while host node {node} had no free page, and it still has none"
                        ),
                    ),
                    OwedPage::NotOwed => Next::stop(
                        StopKind::Fault,
                        "outside-memory",
                        format!(
                            "access to guest-physical {gpa:#x} outside its memory at RIP {rip:#x} (error code {error_code:#x}){}",
                            during_event(cpu)
                        ),
                    ),
                },
            }
        }
        VmExit::InvalidState => Next::stop(
            StopKind::Fault,
            "invalid-state",
            format!("the CPU refused the guest state at RIP {rip:#x}"),
        ),
        VmExit::Forbidden { code } => Next::stop(
            StopKind::Fault,
            "forbidden-instruction",
            format!("exit code {code:#x} at RIP {rip:#x}: nested virtualization is not offered"),
        ),
        VmExit::Unexpected { code, info1, info2 } => Next::stop(
            StopKind::Fault,
            "unexpected-exit",
            format!("exit code {code:#x} (info1 {info1:#x}, info2 {info2:#x}) at RIP {rip:#x}"),
        ),
    }
}

/// VMMCALL / VMCALL (3 bytes each): a hypercall at CPL 0, #UD elsewhere (as on a machine
/// without a hypervisor). RAX = call code, arguments in RBX, RCX, RDX; the status goes to
/// RAX, results to RBX and RCX; no other register changes (`docs/hypercalls.md`).
fn handle_hypercall(
    cpu: &mut impl Vcpu,
    context: &mut VcpuContext,
    machine: &impl Machine,
) -> Next {
    if cpu.cpl() != 0 {
        cpu.inject(Event::Exception {
            vector: exception::INVALID_OPCODE,
            error_code: None,
        });
        return Next::Resume;
    }
    let registers = cpu.registers();
    let reply = match Call::decode(registers.rax, registers.rbx, registers.rcx, registers.rdx) {
        Ok(call) => machine.hypercall(&call),
        Err(status) => Reply {
            status,
            rbx: 0,
            rcx: 0,
        },
    };
    let registers = cpu.registers();
    registers.rax = reply.status.code();
    registers.rbx = reply.rbx;
    registers.rcx = reply.rcx;
    skip(cpu, &mut context.code_page, machine.memory(), HYPERCALL);
    Next::Resume
}

/// The answers to the instructions intercepted for isolation.
fn handle_instruction(
    cpu: &mut impl Vcpu,
    context: &mut VcpuContext,
    machine: &impl Machine,
    instruction: GuestInstruction,
) -> Next {
    match instruction {
        // Caches are shared with other partitions; a guest's own writes are coherent anyway.
        GuestInstruction::CacheFlush => {
            skip(cpu, &mut context.code_page, machine.memory(), CACHE_FLUSH)
        }
        // No performance counters are offered (CR4.PCE is the guest's, the counters the host's).
        GuestInstruction::Rdpmc => {
            cpu.inject(Event::Exception {
                vector: exception::GENERAL_PROTECTION,
                error_code: Some(0),
            });
        }
        // Not offered in CPUID (RDPRU, MONITOR/MWAIT) or part of SVM (INVLPGA): #UD, as on a
        // CPU without them.
        GuestInstruction::Rdpru
        | GuestInstruction::Invlpga
        | GuestInstruction::MonitorMwait
        | GuestInstruction::Vmx => {
            cpu.inject(Event::Exception {
                vector: exception::INVALID_OPCODE,
                error_code: None,
            });
        }
        // XCR0 is the guest's once checked; `0F 01 D1` (with any prefixes) is skipped.
        GuestInstruction::Xsetbv => {
            let registers = cpu.registers();
            let (index, value) = (
                registers.rcx as u32,
                (registers.rdx << 32) | (registers.rax & 0xFFFF_FFFF),
            );
            if cpu.xsetbv(index, value) {
                skip(cpu, &mut context.code_page, machine.memory(), XSETBV);
            } else {
                general_protection(cpu);
            }
        }
        // INT1 is a trap: #DB with RIP after the instruction.
        GuestInstruction::Icebp => {
            skip(cpu, &mut context.code_page, machine.memory(), ICEBP);
            cpu.inject(Event::Exception {
                vector: exception::DEBUG,
                error_code: None,
            });
        }
    }
    Next::Resume
}

/// `MOV CR8`: the task priority's class (TPR bits 4..7) in the vCPU's local APIC (SDM vol. 3A
/// §10.8.6.1). Bits 4..63 of a written value are reserved: #GP. Both forms are 3 or 4 bytes
/// (REX); the backend that intercepts them reports the length.
fn handle_cr8(
    cpu: &mut impl Vcpu,
    context: &mut VcpuContext,
    machine: &impl Machine,
    write: bool,
    register: u8,
) -> Next {
    if write {
        if let Some(refused) = write_task_priority(cpu, context, machine, register) {
            return refused;
        }
    } else {
        let class = machine.with_lapic(context.index, |l| l.task_priority() >> 4);
        cpu.registers().set(register, class as u64);
    }
    skip(cpu, &mut context.code_page, machine.memory(), MOV_CR8);
    Next::Resume
}

/// `MOV CR8, r` the CPU intercepted without saying which register (SVM without decode
/// assists): decoded from the guest's code, then handled as [`handle_cr8`] does. Code that
/// cannot be read or is not that instruction stops the partition (the intercept fires only for
/// it, so the guest changed its code under the CPU).
fn handle_mov_to_cr8(cpu: &mut impl Vcpu, context: &VcpuContext, machine: &impl Machine) -> Next {
    let rip = cpu.rip();
    let linear = cpu.code_base().wrapping_add(rip);
    let mut bytes = [0u8; 15];
    let decoded =
        guest_walk::fetch_instruction(machine.memory(), &cpu.paging(), linear, &mut bytes)
            .map_err(|e| format!("{e:?}"))
            .and_then(|n| {
                mmio_decode::decode_mov_to_cr8(&bytes[..n], cpu.cpu_mode())
                    .map_err(|e| format!("{e:?} in {:02x?}", &bytes[..n]))
            });
    let instruction = match decoded {
        Ok(instruction) => instruction,
        Err(e) => {
            return Next::stop(
                StopKind::Fault,
                "cr8-decode",
                format!("cannot decode the MOV to CR8 at RIP {rip:#x}: {e}"),
            )
        }
    };
    if let Some(refused) = write_task_priority(cpu, context, machine, instruction.register) {
        return refused;
    }
    cpu.set_rip(rip.wrapping_add(u64::from(instruction.length)));
    Next::Resume
}

/// `MOV CR8, r` with general register `register`: the local APIC's TPR becomes the class in
/// its bits 7:4, bits 3:0 clear. Bits 4..63 of the value are reserved: #GP, the TPR unchanged
/// and RIP unmoved (the answer returned, for the caller to give back).
fn write_task_priority(
    cpu: &mut impl Vcpu,
    context: &VcpuContext,
    machine: &impl Machine,
    register: u8,
) -> Option<Next> {
    let value = cpu.registers().get(register);
    if value > 0xF {
        return Some(general_protection(cpu));
    }
    machine.with_lapic(context.index, |l| l.set_task_priority((value as u8) << 4));
    None
}

fn during_event(cpu: &impl Vcpu) -> String {
    match cpu.interrupted_event() {
        Some(vector) => format!(" while delivering vector {vector}"),
        None => String::new(),
    }
}

/// What a guest's own fault handler would want to know of where it died: its privilege level,
/// stack, address space and whether it could take interrupts.
fn fault_state(cpu: &mut impl Vcpu) -> String {
    let rsp = cpu.registers().rsp;
    format!(
        " (CPL {}, RSP {rsp:#x}, CR3 {:#x}, IF {}{})",
        cpu.cpl(),
        cpu.paging().cr3,
        u8::from(cpu.interrupts_enabled()),
        if cpu.interrupt_shadow() {
            ", interrupt shadow"
        } else {
            ""
        }
    )
}

fn general_protection(cpu: &mut impl Vcpu) -> Next {
    cpu.inject(Event::Exception {
        vector: exception::GENERAL_PROTECTION,
        error_code: Some(0),
    });
    Next::Resume
}

#[inline(always)]
fn handle_io(
    cpu: &mut impl Vcpu,
    context: &VcpuContext,
    machine: &impl Machine,
    access: IoAccess,
    now: u64,
) -> Next {
    if access.string {
        return Next::stop(
            StopKind::Fault,
            "unsupported-io",
            format!(
                "string I/O to port {:#x} at RIP {:#x} is not emulated",
                access.port,
                cpu.rip()
            ),
        );
    }
    let mask = match access.size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    };
    let vcpu = context.index;
    let next = if access.write {
        let value = (cpu.registers().rax & mask) as u32;
        let effects = machine.with_devices(|d| d.port_write(access.port, access.size, value, now));
        match apply(machine, vcpu, effects) {
            None => Next::Resume,
            Some(effect) => stop_for(effect, format!("port {:#x} ({value:#x})", access.port)),
        }
    } else {
        let (value, effects) = machine.with_devices(|d| d.port_read(access.port, access.size, now));
        // A read only changes interrupt lines: nothing in it stops the guest.
        apply_quietly(machine, vcpu, effects);
        let registers = cpu.registers();
        // IN writes AL/AX and leaves the rest; IN EAX zero-extends into RAX.
        registers.rax = if access.size == 4 {
            value as u64
        } else {
            (registers.rax & !mask) | value as u64
        };
        Next::Resume
    };
    if matches!(next, Next::Resume) {
        cpu.set_rip(access.next_rip);
    }
    next
}

fn handle_msr(
    cpu: &mut impl Vcpu,
    context: &mut VcpuContext,
    machine: &impl Machine,
    write: bool,
    now: u64,
) -> Next {
    let registers = cpu.registers();
    let msr = registers.rcx as u32;
    let index = context.index;
    if write {
        let value = (registers.rdx << 32) | (registers.rax & 0xFFFF_FFFF);
        let done = match msr {
            MSR_APIC_BASE => machine
                .with_lapic(index, |l| l.set_apic_base_msr(value))
                .is_ok(),
            MSR_TSC_DEADLINE => {
                machine.with_lapic(index, |l| l.set_tsc_deadline(value, now));
                true
            }
            X2APIC_FIRST..=X2APIC_LAST => {
                match machine.with_lapic(index, |l| l.msr_write(msr, value, now)) {
                    Ok(effect) => {
                        apply_lapic_effect(machine, index, effect);
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => match context.msrs.write(msr, value) {
                Ok(MsrAction::Done) => true,
                // The TSC offset is the partition's, shared by its vCPUs so they agree: a
                // guest's write of IA32_TSC is accepted and ignored.
                Ok(MsrAction::SetTsc(_)) => true,
                Ok(MsrAction::SetEfer(value)) => {
                    let paging = cpu.paging().cr0 & (1 << 31) != 0;
                    match efer_update(context.vendor, cpu.efer(), value, paging) {
                        Ok(efer) => {
                            cpu.set_efer(efer);
                            true
                        }
                        Err(_) => false,
                    }
                }
                Ok(MsrAction::LoadPat(pat)) => {
                    cpu.set_pat(pat);
                    true
                }
                Ok(MsrAction::LoadTscAux(value)) => {
                    cpu.set_tsc_aux(value);
                    true
                }
                Ok(MsrAction::Apic) | Err(_) => false,
            },
        };
        if !done {
            return general_protection(cpu);
        }
    } else {
        let value = match msr {
            MSR_APIC_BASE => Some(machine.with_lapic(index, |l| l.apic_base_msr())),
            MSR_TSC_DEADLINE => Some(machine.with_lapic(index, |l| l.tsc_deadline())),
            X2APIC_FIRST..=X2APIC_LAST => machine.with_lapic(index, |l| l.msr_read(msr, now)).ok(),
            _ => match context.msrs.read(msr) {
                Ok(MsrRead::Value(value)) => Some(value),
                Ok(MsrRead::Tsc) => Some(now),
                Ok(MsrRead::Efer) => Some(cpu.efer()),
                Ok(MsrRead::Apic) | Err(_) => None,
            },
        };
        let Some(value) = value else {
            return general_protection(cpu);
        };
        let registers = cpu.registers();
        registers.rax = value & 0xFFFF_FFFF;
        registers.rdx = value >> 32;
    }
    skip(cpu, &mut context.code_page, machine.memory(), MSR_ACCESS);
    Next::Resume
}

/// Acts on what a local APIC register write asked for.
/// Applies the effects of a device access by vCPU `vcpu`; returns the one that ends the
/// guest's run (power-off, reset, debug-exit), if any, for the caller to describe.
///
/// The interrupt the access raised or lowered goes first (the line's level is the device's
/// state after the access), then the device's own effect. Most accesses have neither: that
/// path is two tests.
#[inline(always)]
fn apply(machine: &impl Machine, vcpu: usize, effects: Effects) -> Option<Effect> {
    if effects.is_empty() {
        // Nothing to drop in it: skipping its drop glue (a test of each field again) is
        // what keeps the usual access at two tests.
        core::mem::forget(effects);
        return None;
    }
    apply_effects(machine, vcpu, effects)
}

/// [`apply`] where nothing can stop the guest (a port read's effects): the returned effect
/// is dropped out of line, so the usual empty case has no drop glue to run.
#[inline(always)]
fn apply_quietly(machine: &impl Machine, vcpu: usize, effects: Effects) {
    if effects.is_empty() {
        core::mem::forget(effects);
    } else {
        let _ = apply_effects(machine, vcpu, effects);
    }
}

#[inline(never)]
fn apply_effects(machine: &impl Machine, vcpu: usize, effects: Effects) -> Option<Effect> {
    if let Some(delivery) = effects.interrupt {
        machine.deliver_ioapic(delivery);
    }
    match effects.device? {
        Effect::None => {}
        Effect::Console(line) => machine.console(&line),
        Effect::Interrupt(delivery) => machine.deliver_ioapic(delivery),
        Effect::Ipi(ipi) => machine.deliver_ipi(vcpu, ipi),
        Effect::EndOfInterrupt(vector) => {
            if let Some(delivery) = machine.with_devices(|d| d.end_of_interrupt(vector)) {
                machine.deliver_ioapic(delivery);
            }
        }
        Effect::QueueWork(device) => machine.serve_device(vcpu, device, false),
        Effect::DriverReset(device) => machine.serve_device(vcpu, device, true),
        Effect::PciMappings(mappings) => machine.pci_mappings(vcpu, mappings),
        Effect::PciInterrupts(routes) => machine.pci_interrupts(vcpu, routes),
        stop @ (Effect::PowerOff | Effect::Reset | Effect::DebugExit(_)) => return Some(stop),
    }
    None
}

/// The stop a device asked for (an effect [`apply`] returned), the access described by
/// `access` (where, and what was written).
fn stop_for(effect: Effect, access: String) -> Next {
    match effect {
        Effect::PowerOff => Next::stop(
            StopKind::PowerOff,
            "power-off",
            format!("ACPI soft-off (S5) through {access}"),
        ),
        Effect::DebugExit(status) => Next::stop(
            StopKind::GuestExit,
            "exit",
            format!("wrote {status} to the debug-exit port"),
        ),
        _ => Next::stop(
            StopKind::Reboot,
            "reboot",
            format!("reset through {access}"),
        ),
    }
}

fn apply_lapic_effect(machine: &impl Machine, vcpu: usize, effect: LapicEffect) {
    let _ = apply(machine, vcpu, Effects::of(effect.into()));
}

fn handle_mmio(
    cpu: &mut impl Vcpu,
    context: &mut VcpuContext,
    machine: &impl Machine,
    target: MmioTarget,
    now: u64,
) -> Next {
    let (device, offset) = (target.device, target.offset);
    let rip = cpu.rip();
    let linear = cpu.code_base().wrapping_add(rip);
    let (paging, mode) = (cpu.paging(), cpu.cpu_mode());
    let memory = machine.memory();
    let instruction = match context.decoded_mmio.lookup(memory, paging, mode, linear) {
        Some(instruction) => instruction,
        None => match fetch_and_decode(memory, paging, mode, linear) {
            Ok((instruction, gpa, bytes)) => {
                let decoded = &mut context.decoded_mmio;
                decoded.keep(paging, mode, linear, gpa, &bytes, instruction);
                instruction
            }
            Err(Undecoded::Fetch(e)) => {
                return Next::stop(
                    StopKind::Fault,
                    "mmio-fetch",
                    format!(
                    "cannot read the instruction at RIP {rip:#x} that touched {device:?}: {e:?}"
                ),
                )
            }
            Err(Undecoded::Decode(e, bytes, fetched)) => {
                return Next::stop(
                    StopKind::Fault,
                    "mmio-decode",
                    format!(
                    "instruction {:02x?} at RIP {rip:#x} touching {device:?}+{offset:#x}: {e:?}",
                    &bytes[..fetched]
                ),
                )
            }
        },
    };
    let size = instruction.size;
    // An access running past the window's end also touches whatever follows it, which this
    // device cannot answer for: no register straddles a window's end.
    if offset.saturating_add(u64::from(size)) > target.end {
        return Next::stop(
            StopKind::Fault,
            "mmio-crossing",
            format!(
                "an access of {size} bytes at {device:?}+{offset:#x} by RIP {rip:#x} runs past the end of its window ({:#x} bytes)",
                target.end
            ),
        );
    }
    let index = context.index;
    match instruction.kind {
        MmioKind::Load { .. } => {
            let value = mmio_read(machine, index, target, size, now);
            instruction.complete_read(cpu.registers(), value);
        }
        MmioKind::Store { .. } => {
            let value = instruction.store_value(cpu.registers()).unwrap_or(0);
            if let Some(effect) = mmio_write(machine, index, target, size, value, now) {
                return stop_for(effect, format!("{device:?}+{offset:#x} ({value:#x})"));
            }
        }
        MmioKind::Exchange { .. } => {
            // XCHG with memory: the device sees a read, then the register's value written.
            let old = mmio_read(machine, index, target, size, now);
            let value = instruction.store_value(cpu.registers()).unwrap_or(0);
            instruction.complete_read(cpu.registers(), old);
            if let Some(effect) = mmio_write(machine, index, target, size, value, now) {
                return stop_for(effect, format!("{device:?}+{offset:#x} ({value:#x})"));
            }
        }
    }
    cpu.set_rip(rip.wrapping_add(instruction.length as u64));
    Next::Resume
}

/// Why the instruction of an MMIO exit could not be had.
enum Undecoded {
    Fetch(guest_walk::WalkError),
    /// The error, the bytes and how many were fetched.
    Decode(mmio_decode::DecodeError, [u8; 15], usize),
}

/// The instruction at `linear`, fetched through the guest's page tables and decoded, with the
/// guest-physical address of its first byte (for [`DecodedMmio::keep`]) and its bytes.
fn fetch_and_decode(
    memory: &impl GuestPhysical,
    paging: PagingState,
    mode: CpuMode,
    linear: u64,
) -> Result<(MmioInstruction, u64, [u8; 15]), Undecoded> {
    let mut bytes = [0u8; 15];
    let (fetched, gpa) = guest_walk::fetch_instruction_located(memory, &paging, linear, &mut bytes)
        .map_err(Undecoded::Fetch)?;
    let instruction = mmio_decode::decode(&bytes[..fetched], mode)
        .map_err(|e| Undecoded::Decode(e, bytes, fetched))?;
    Ok((instruction, gpa, bytes))
}

/// A read of an MMIO device: the vCPU's own local APIC, or a device of the platform.
fn mmio_read(machine: &impl Machine, vcpu: usize, target: MmioTarget, size: u8, now: u64) -> u64 {
    let (value, effects) = if target.device == DeviceId::LocalApic {
        let at = target.register(size);
        let value = machine.with_lapic(vcpu, |l| l.read(at, now));
        (value, Effects::NONE)
    } else {
        machine.with_devices(|d| d.mmio_read(target, size, now))
    };
    let _ = apply(machine, vcpu, effects);
    value
}

/// A write to an MMIO device; the effect that ends the guest's run, if the device asked for
/// one.
fn mmio_write(
    machine: &impl Machine,
    vcpu: usize,
    target: MmioTarget,
    size: u8,
    value: u64,
    now: u64,
) -> Option<Effect> {
    let effects = if target.device == DeviceId::LocalApic {
        let at = target.register(size);
        Effects::of(machine.with_lapic(vcpu, |l| l.write(at, value, now)))
    } else {
        machine.with_devices(|d| d.mmio_write(target, size, value, now))
    };
    apply(machine, vcpu, effects)
}

#[cfg(test)]
mod tests;
