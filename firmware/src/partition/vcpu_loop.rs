//! Running one vCPU on its pinned CPU: inject what its local APIC has pending, bound the run
//! with the host timer, enter the guest, hand the exit to the VMM core, idle on HLT — until
//! its partition stops. Nothing here panics on guest input; the worst a guest can cause is
//! the stop of its own partition.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use numavisor_policy::memory::{HostPage, Usage};
use numavisor_policy::vmexit::VmExit;
use numavisor_policy::vmm::exit::{self, Machine, Next, StopKind, StopRequest, VcpuContext};
use numavisor_policy::vmm::exit_profile::{ExitProfile, Stage};
use numavisor_policy::vmm::msr::MsrState;
use numavisor_policy::vmm::nmi::NmiState;
use numavisor_policy::vmm::vcpu::{EntryState, Event, Vcpu};

use super::control::{halt_a_while, AfterStop};
use super::guest_memory::GuestMemory;
use super::machine::PartitionMachine;
use numavisor_policy::partition::memory_sync::MemoryView;

use super::memory_sync;
use super::{build, poll_console_input, stop_or_restart, Hypervisor, Partition};
use crate::platform::cpu::{apic, tsc};
use crate::platform::heap;
use crate::virt::svm::vcpu::SvmVcpu;
use crate::virt::vmx::vcpu::VmxVcpu;
use crate::virt::{Active, ActiveVcpu};

/// A backend's vCPU as the loop drives it. The loop is compiled once per backend (and per
/// profiling choice), so that every `Vcpu` call on the exit path is a direct call the
/// compiler can inline, not a match on which backend runs.
trait LoopVcpu: Vcpu {
    /// Drops this CPU's cached translations of the partition's SLAT before the next entry.
    fn flush_guest_translations(&mut self);
}

impl LoopVcpu for SvmVcpu {
    fn flush_guest_translations(&mut self) {
        SvmVcpu::flush_guest_translations(self);
    }
}

impl LoopVcpu for VmxVcpu {
    fn flush_guest_translations(&mut self) {
        VmxVcpu::flush_guest_translations(self);
    }
}

/// The longest a guest runs before the hypervisor looks at its partition again.
const SLICE_MICROS: u64 = 10_000;

/// Runs the vCPU queued for this CPU, if any, until its partition stops. Returns whether
/// there was one.
pub fn run_assigned_vcpu(hv: &Hypervisor, apic_id: u32) -> bool {
    let Some((partition, vcpu)) = hv.take_assignment(apic_id) else {
        return false;
    };
    // Before virtualization is on, so that every CPU of the partition takes part even if
    // that then fails for one of them.
    if let Err(e) = build::first_start_share(partition, vcpu) {
        log::error!(
            "partition \"{}\": cannot load its guest: {e}",
            partition.name()
        );
        stop_before_running(partition, "invalid-image", &alloc::format!("{e}"));
        return true;
    }
    let node = partition
        .state
        .lock()
        .vcpus
        .get(vcpu)
        .map_or(0, |plan| plan.node);
    let mut reserved = hv.take_host_pages(apic_id);
    let mut allocate = || reserved.pop().or_else(|| host_page(hv, node));
    if !Active::enable_this_cpu(apic_id, &mut allocate) {
        log::error!(
            "partition \"{}\": virtualization cannot be turned on for CPU {apic_id} (no memory for its host state); vCPU {vcpu} cannot run",
            partition.name()
        );
        stop_before_running(
            partition,
            "no-memory",
            "no memory for a CPU's VMRUN save area",
        );
        return true;
    }
    run_vcpu(partition, vcpu);
    true
}

/// Stops `partition` (as a fault) from a CPU whose vCPU cannot run, once its other vCPUs
/// have parked; nothing if another vCPU is stopping it already.
fn stop_before_running(partition: &Partition, reason: &str, detail: &str) {
    if partition.control.begin_stop() {
        partition
            .control
            .wait_parked(partition, partition.vcpus.len() - 1);
        let _ = stop_or_restart(partition, StopKind::Fault, reason, detail);
        partition.control.finish_stop(false);
    }
}

/// A page of hypervisor memory for a CPU's own use (the backend's host state), from the
/// CPU's own node `node`, else the nearest one that has a page.
pub(super) fn host_page(hv: &Hypervisor, node: usize) -> Option<HostPage> {
    let mut frames = hv.frames.lock();
    let mut order: Vec<usize> = (0..frames.node_count()).collect();
    if let Some(row) = hv.distances.get(node) {
        order.sort_by_key(|&other| (other != node, row.get(other).copied().unwrap_or(u8::MAX)));
    }
    frames
        .allocate_page_near(&order, Usage::Hypervisor)
        .ok()
        .map(|(page, _)| page)
}

/// Lets the host take the interrupt that made the guest exit (the wake stub acknowledges it).
fn take_host_interrupt() {
    x86_64::instructions::interrupts::enable();
    x86_64::instructions::nop();
    x86_64::instructions::interrupts::disable();
}

fn run_vcpu(partition: &'static Partition, index: usize) {
    loop {
        let epoch = partition.control.epoch();
        // A fresh vCPU each life: its control block was prepared again at the restart.
        let cpu = partition
            .state
            .lock()
            .controls
            .as_ref()
            .and_then(|controls| Active::vcpu(controls, index));
        let end = match cpu {
            Some(mut cpu) => {
                let mut profile = ExitProfile::new(PROFILE.load(Ordering::Relaxed));
                let end = match &mut cpu {
                    ActiveVcpu::Svm(cpu) => run_epoch_profiled(partition, index, cpu, &mut profile),
                    ActiveVcpu::Vmx(cpu) => run_epoch_profiled(partition, index, cpu, &mut profile),
                };
                if profile.enabled() {
                    PROFILE_SUMS.lock().add(&profile);
                }
                partition.memory.leave(index);
                // Gives the control block back before its partition's memory may be reused.
                drop(cpu);
                end
            }
            // Stopped like any fault, so the other vCPUs do not wait for this one for ever.
            None => EpochEnd::Stop(StopRequest {
                kind: StopKind::Fault,
                reason: "invalid-state",
                detail: alloc::format!(
                    "the CPU refused vCPU {index}'s control block (VMCLEAR/VMPTRLD failed)"
                ),
            }),
        };
        let after = match end {
            EpochEnd::Park => partition.control.park(partition, epoch),
            EpochEnd::Stop(request) => stop(partition, index, epoch, request),
        };
        match after {
            AfterStop::Restarted => continue,
            AfterStop::Ended => return,
        }
    }
}

/// How a life of the partition ended for one vCPU.
enum EpochEnd {
    /// Another vCPU is stopping the partition: wait for it.
    Park,
    /// This vCPU stops it.
    Stop(StopRequest),
}

/// Whether the vCPU loop profiles its stages (`profile=exits`).
static PROFILE: AtomicBool = AtomicBool::new(false);
/// Every vCPU's stage sums, added at the end of each of its lives.
static PROFILE_SUMS: spin::Mutex<ExitProfile> = spin::Mutex::new(ExitProfile::new(true));

/// Turns the stage profile of the vCPU loop on (`profile=exits`).
pub fn enable_profile() {
    PROFILE.store(true, Ordering::Relaxed);
}

/// The stage sums so far, if profiling is on.
pub fn profile() -> Option<ExitProfile> {
    PROFILE
        .load(Ordering::Relaxed)
        .then(|| PROFILE_SUMS.lock().clone())
}

/// The stage marks of one vCPU loop: recorded into the profile when `ON`, compiled out
/// otherwise (each would cost the exit path a test and a branch).
struct Marks<'a, const ON: bool>(&'a mut ExitProfile);

impl<const ON: bool> Marks<'_, ON> {
    #[inline(always)]
    fn start(&mut self) {
        if ON {
            self.0.start(tsc::now);
        }
    }

    #[inline(always)]
    fn mark(&mut self, stage: Stage) {
        if ON {
            self.0.mark(stage, tsc::now);
        }
    }

    /// The heap's allocation count at a pass's start (0 when not profiling).
    #[inline(always)]
    fn allocations(&self) -> u64 {
        if ON {
            heap::allocations()
        } else {
            0
        }
    }

    #[inline(always)]
    fn count_allocations(&mut self, before: u64) {
        if ON {
            self.0.count_allocations(before, heap::allocations());
        }
    }
}

/// [`run_epoch`], with its stages profiled if `profile` is on: two copies of the loop, so
/// that the unprofiled one carries no marks.
fn run_epoch_profiled(
    partition: &'static Partition,
    index: usize,
    cpu: &mut impl LoopVcpu,
    profile: &mut ExitProfile,
) -> EpochEnd {
    if profile.enabled() {
        run_epoch(partition, index, cpu, Marks::<true>(profile))
    } else {
        run_epoch(partition, index, cpu, Marks::<false>(profile))
    }
}

/// One life of the partition, from its entry state to its next stop.
fn run_epoch<const PROFILED: bool, C: LoopVcpu>(
    partition: &'static Partition,
    index: usize,
    cpu: &mut C,
    mut profile: Marks<'_, PROFILED>,
) -> EpochEnd {
    let (entry, offset, mut sync, ram) = {
        let state = partition.state.lock();
        let (sync, ram) = memory_sync::start(partition, index, &state);
        (state.entry, state.tsc_offset, sync, ram)
    };
    let mut machine = PartitionMachine::new(partition, index, GuestMemory::new(ram));
    let mut context = VcpuContext {
        index,
        cpuid: build::cpuid_policy(partition, index),
        cpuid_cache: Default::default(),
        code_page: Default::default(),
        decoded_mmio: Default::default(),
        msrs: MsrState::new(build::guest_vendor()),
        vendor: build::guest_vendor(),
        nmi: NmiState::default(),
    };
    let slot = &partition.vcpus[index];
    cpu.set_tsc_offset(offset);
    cpu.set_tsc_aux(context.msrs.tsc_aux());
    let mut running = index == 0;
    if running {
        cpu.enter(entry);
        let mut state = partition.state.lock();
        state.first_entry_tsc.get_or_insert(tsc::now());
    }
    let guest_now = || tsc::now().wrapping_add(offset);
    let limit = time_limit_ticks(partition);
    let mut exits: u64 = 0;
    let mut stats = StatsClock::new(partition);
    let mut timer = HostTimer::default();
    // Set after an exit that changed nothing but the guest's registers and the device it
    // read: the next entry needs none of the checks, injection and deadlines before it.
    let mut resume_at_once = false;
    // Whether time-driven work is due before the next entry (the time limit, the platform
    // timers, Dynamic Memory's policy, the host timer's deadline): after an interrupt of the
    // host (its timer, or a kick), an idle wait, or an exit that may have reprogrammed a
    // platform timer. Other exits leave them as they were, and the host timer armed before
    // still ends the run when the next of them falls due.
    let mut timers_due = true;
    // The local APIC timer's deadline the host timer was last armed for: a guest that
    // reprograms its timer (or a periodic one that fired) moves it.
    let mut armed_lapic_deadline = None;
    loop {
        profile.start();
        let allocations = profile.allocations();
        if !resume_at_once {
            if partition.control.stop_requested() {
                record_exits(partition, &mut exits);
                return EpochEnd::Park;
            }
            if let Some(request) = partition.control.take_asked() {
                record_exits(partition, &mut exits);
                return EpochEnd::Stop(request);
            }
            if let Some(limit) = limit.filter(|&l| timers_due && guest_now() >= l) {
                record_exits(partition, &mut exits);
                let request = StopRequest {
                    kind: StopKind::Fault,
                    reason: "time-limit",
                    detail: alloc::format!(
                        "ran {} ms, its layout's time_limit ({} ms)",
                        tsc::ticks_to_micros(guest_now()) / 1000,
                        tsc::ticks_to_micros(limit) / 1000
                    ),
                };
                return EpochEnd::Stop(request);
            }
            renew_memory(partition, &mut sync, &mut machine, cpu);
            super::network::send_backlog(partition, &machine.memory);
            if slot.take_init() {
                running = false;
                machine.with_lapic(index, |l| l.reset());
                context.nmi.reset();
            }
            if running {
                // A start-up IPI only starts a CPU waiting for one (Linux sends two; the second
                // finds this vCPU running): drop it, or it would end every HLT at once.
                let _ = slot.take_startup();
            } else {
                match slot.take_startup() {
                    Some(vector) => {
                        cpu.enter(EntryState::Startup { vector });
                        running = true;
                    }
                    None => {
                        idle(partition, index, &machine, None::<&C>, offset, &mut timer);
                        timers_due = true;
                        continue;
                    }
                }
            }
            profile.mark(Stage::Checks);
            let now = guest_now();
            if index == 0 && timers_due {
                stats.tick(partition);
                poll_platform_timers(&machine, now);
                super::dynamic::poll(partition);
                super::hot_add::poll(partition);
                super::passthrough::poll_faults(partition);
            }
            profile.mark(Stage::Platform);
            let lapic_deadline = inject_pending(cpu, &machine, &mut context.nmi, now);
            profile.mark(Stage::Inject);
            if timers_due || lapic_deadline != armed_lapic_deadline {
                armed_lapic_deadline = lapic_deadline;
                let guest_deadline = earliest(lapic_deadline, platform_deadline(&machine, now));
                let wake = host_wake(offset, [guest_deadline, limit]);
                timer.arm(wake);
                cpu.set_run_deadline(wake);
                timers_due = false;
            }
            profile.mark(Stage::Arm);
        }
        let exit = cpu.run();
        profile.mark(Stage::Run);
        exits += 1;
        if let Some(vector) = cpu.take_untaken_interrupt() {
            machine.with_lapic(index, |l| l.withdraw(vector));
        }
        renew_memory(partition, &mut sync, &mut machine, cpu);
        if log::log_enabled!(log::Level::Trace) {
            let rip = cpu.rip();
            let (rax, rcx) = (cpu.registers().rax, cpu.registers().rcx);
            log::trace!(
                "partition \"{}\" vCPU {index}: {exit:?} at RIP {rip:#x} (RAX {rax:#x} RCX {rcx:#x})",
                partition.name()
            );
        }
        partition.exit_counts.count(exit.kind());
        if matches!(exit, VmExit::PhysicalInterrupt) {
            take_host_interrupt();
            super::msi_routes::deliver_pending(partition);
            timer.fired();
            poll_console_input(partition.hv);
        }
        if matches!(exit, VmExit::PhysicalNmi) {
            // Taken by the host's NMI handler at STGI; the platform's, not the guest's.
            log::warn!(
                "partition \"{}\" vCPU {index}: a host NMI ended its run ({} NMI(s) so far); resumed",
                partition.name(),
                crate::platform::cpu::idt::host_nmis()
            );
        }
        profile.mark(Stage::After);
        machine.take_touched();
        let next = exit::handle(cpu, &mut context, &machine, exit, guest_now());
        profile.mark(Stage::Handle);
        profile.count_allocations(allocations);
        resume_at_once = matches!(next, Next::Resume)
            && quiet_exit(&exit)
            && !machine.take_touched()
            && !context.nmi.pending()
            && !partition.control.stop_requested();
        // (A quiet exit moves no timer.)
        if !resume_at_once {
            timers_due |= moves_timers(&exit);
        }
        match next {
            Next::Resume => {}
            // HLT ends at once on an NMI the guest may take.
            Next::Halt if context.nmi.deliverable(&*cpu) => {}
            Next::Halt => {
                idle(partition, index, &machine, Some(&*cpu), offset, &mut timer);
                timers_due = true;
            }
            Next::Stop(request) => {
                record_exits(partition, &mut exits);
                return EpochEnd::Stop(request);
            }
        }
    }
}

/// Exits whose handling can change nothing but the guest's registers, the MSRs its context
/// keeps, and the state of the device a port read reached: CPUID, MSR accesses and port
/// reads. Whatever else the handler did (a local APIC access, an interrupt raised, device
/// work, a hypercall) the machine notes as touched; the platform's timer deadlines change only
/// with port writes; anything from another CPU comes with a kick, which is an exit of its
/// own; and the host timer armed before the last full pass still bounds the run. So after
/// such an exit the guest is entered again at once, which is what makes these exits cheap.
fn quiet_exit(exit: &VmExit) -> bool {
    match exit {
        VmExit::Io(access) => !access.write,
        VmExit::Cpuid | VmExit::Msr { .. } => true,
        _ => false,
    }
}

/// Exits after which the time-driven work of the next pass is due: an interrupt of the host
/// (its timer fired, or another CPU kicked this one) and a port write (the PIT and the RTC
/// are programmed through ports). Local APIC timer writes (MSR or MMIO) are seen by their
/// deadline moving; the rest (CPUID, MSRs, MMIO, windows, hypercalls) set no timer.
fn moves_timers(exit: &VmExit) -> bool {
    match exit {
        VmExit::Io(access) => access.write,
        VmExit::Cpuid
        | VmExit::Msr { .. }
        | VmExit::NestedPageFault { .. }
        | VmExit::InterruptWindow
        | VmExit::NmiWindow
        | VmExit::Iret
        | VmExit::Vmmcall
        | VmExit::Cr8 { .. }
        | VmExit::MovToCr8 => false,
        _ => true,
    }
}

/// A checkpoint of `memory_sync`: if the partition's RAM changed, takes the new copy and
/// drops this CPU's cached SLAT translations before the next entry.
#[inline(always)]
fn renew_memory(
    partition: &Partition,
    sync: &mut MemoryView,
    machine: &mut PartitionMachine,
    cpu: &mut impl LoopVcpu,
) {
    if let Some(ram) = memory_sync::renew(partition, sync) {
        machine.memory = GuestMemory::new(ram);
        cpu.flush_guest_translations();
    }
}

/// Moves a pending NMI (first: it outranks interrupts) and the highest pending interrupt of
/// the vCPU's local APIC into the guest, or asks for the exit after which the guest can take
/// them. NMIs sent since the last entry merge into the one `nmi` holds (`vmm::nmi`).
///
/// Returns the local APIC timer's next deadline, read under the same lock.
fn inject_pending(
    cpu: &mut impl Vcpu,
    machine: &PartitionMachine,
    nmi: &mut NmiState,
    now: u64,
) -> Option<u64> {
    let index = machine.vcpu;
    let arrived = machine.partition.vcpus[index].take_nmis();
    if arrived != 0 {
        nmi.signal(arrived, cpu);
    }
    nmi.inject(cpu);
    let deadline = inject_interrupt(cpu, machine, index, now);
    nmi.arm_exit(cpu);
    deadline
}

/// Moves the highest pending interrupt of the vCPU's local APIC into the guest, or asks for
/// an interrupt window when the guest cannot take it yet. Returns the APIC timer's next
/// deadline.
fn inject_interrupt(
    cpu: &mut impl Vcpu,
    machine: &PartitionMachine,
    index: usize,
    now: u64,
) -> Option<u64> {
    let (pending, tpr, held, deadline) = machine.with_lapic(index, |l| {
        l.advance(now);
        (
            l.pending_vector(),
            l.task_priority(),
            l.held_by_task_priority(),
            l.next_deadline(),
        )
    });
    // The guest's CR8 reads the TPR's class, however the TPR was last written; and where CR8
    // writes do not exit, the one that lowers it below a waiting interrupt must.
    cpu.load_task_priority(tpr >> 4);
    cpu.exit_on_task_priority_write(held);
    let Some(vector) = pending else {
        cpu.set_interrupt_window(false);
        return deadline;
    };
    if !cpu.event_queued() && cpu.interruptible() {
        machine.with_lapic(index, |l| l.acknowledge(vector));
        cpu.inject(Event::Interrupt(vector));
        cpu.set_interrupt_window(false);
    } else {
        cpu.set_interrupt_window(true);
    }
    deadline
}

/// Idles the CPU until the vCPU has something to do: an interrupt it can take (after HLT;
/// `halted` holds its state), a start-up signal (while it waits for SIPI), or a stop.
fn idle(
    partition: &Partition,
    index: usize,
    machine: &PartitionMachine,
    halted: Option<&impl Vcpu>,
    offset: u64,
    timer: &mut HostTimer,
) {
    let slot = &partition.vcpus[index];
    let limit = time_limit_ticks(partition);
    loop {
        let now = tsc::now().wrapping_add(offset);
        // A vCPU waiting for SIPI (not halted) keeps an NMI pending rather than waking on it.
        let signalled = match halted {
            Some(_) => slot.signalled(),
            None => slot.start_signalled(),
        };
        if partition.control.stop_requested() || signalled || limit.is_some_and(|l| now >= l) {
            return;
        }
        // Nothing here reads guest memory; the loop renews its copy before the next entry.
        partition.memory.acknowledge(index);
        if index == 0 {
            poll_platform_timers(machine, now);
            super::dynamic::poll(partition);
            super::passthrough::poll_faults(partition);
        }
        let pending = machine.with_lapic(index, |l| {
            l.advance(now);
            l.pending_vector().is_some()
        });
        let deadline = next_deadline(machine, index, now);
        // HLT ends on an interrupt the guest would take (IF set); with IF clear only a
        // stop, INIT or NMI ends it.
        if pending && halted.is_some_and(|cpu| cpu.interrupts_enabled()) {
            return;
        }
        timer.arm(host_wake(offset, [deadline, limit]));
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
        super::msi_routes::deliver_pending(partition);
        timer.fired();
        poll_console_input(partition.hv);
    }
}

/// The host TSC at which this CPU must look at its vCPU again: the earliest of the guest-TSC
/// `deadlines` (converted with the partition's TSC `offset`; one already past means now) and
/// the end of a slice, which bounds every guest run.
fn host_wake(offset: u64, deadlines: [Option<u64>; 2]) -> u64 {
    let now = tsc::now();
    let slice_end = tsc::deadline_after_micros(SLICE_MICROS);
    deadlines
        .into_iter()
        .flatten()
        .map(|guest| guest.wrapping_sub(offset).max(now))
        .fold(slice_end, u64::min)
}

/// This CPU's APIC timer as the vCPU loop armed it. Re-arming costs register writes (each one
/// an emulated access under TCG), so a deadline is armed only when it is earlier than the one
/// already armed, or that one has passed; firing early is harmless (one more exit).
#[derive(Default)]
struct HostTimer {
    armed: Option<u64>,
}

impl HostTimer {
    fn arm(&mut self, deadline: u64) {
        let now = tsc::now();
        if self
            .armed
            .is_some_and(|armed| armed > now && armed <= deadline)
        {
            return;
        }
        apic::arm_timer_at(deadline);
        self.armed = Some(deadline);
    }

    /// An interrupt came (perhaps this timer's): arm again next time.
    fn fired(&mut self) {
        self.armed = None;
    }
}

/// When vCPU 0 next prints its partition's `exit_counts` (`exit-stats=MS`), looked at on the passes
/// where time-driven work is due (at least once a slice).
struct StatsClock {
    next: u64,
}

impl StatsClock {
    fn new(partition: &Partition) -> StatsClock {
        StatsClock {
            next: tsc::now().saturating_add(partition.hv.exit_stats_period),
        }
    }

    fn tick(&mut self, partition: &Partition) {
        let period = partition.hv.exit_stats_period;
        let now = tsc::now();
        if period != 0 && now >= self.next {
            super::emit_exit_counts(partition);
            self.next = now.saturating_add(period);
        }
    }
}

/// The layout's `time_limit` in guest TSC ticks (the guest TSC starts near 0 at each start).
fn time_limit_ticks(partition: &Partition) -> Option<u64> {
    let ms = partition.spec.time_limit_ms?;
    Some((ms as u128 * tsc::hz() as u128 / 1000).min(u64::MAX as u128) as u64)
}

/// vCPU 0 drives the platform's own timers (the PIT): it raises what they owe.
fn poll_platform_timers(machine: &PartitionMachine, now: u64) {
    if let Some(delivery) = machine.with_devices(|d| d.poll_timers(now)) {
        machine.deliver_ioapic(delivery);
    }
}

/// The guest TSC at which vCPU `index` next has a timer to serve: its local APIC's, and for
/// vCPU 0 the platform timers' too.
fn next_deadline(machine: &PartitionMachine, index: usize, now: u64) -> Option<u64> {
    let lapic = machine.with_lapic(index, |l| l.next_deadline());
    earliest(lapic, platform_deadline(machine, now))
}

/// The platform timers' next deadline, for vCPU 0 (which drives them); none for the others.
fn platform_deadline(machine: &PartitionMachine, now: u64) -> Option<u64> {
    if machine.vcpu == 0 {
        machine.with_devices(|d| d.next_timer_deadline(now))
    } else {
        None
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn record_exits(partition: &Partition, exits: &mut u64) {
    let mut state = partition.state.lock();
    state.exits += core::mem::take(exits);
    state.stop_tsc = tsc::now();
}

/// Stops (or restarts) the partition on behalf of vCPU `index`, once the others parked.
fn stop(
    partition: &'static Partition,
    index: usize,
    epoch: u32,
    request: StopRequest,
) -> AfterStop {
    if !partition.control.begin_stop() {
        // Another vCPU is already stopping the partition.
        return partition.control.park(partition, epoch);
    }
    for (other, slot) in partition.vcpus.iter().enumerate() {
        if other != index {
            slot.kick();
        }
    }
    partition
        .control
        .wait_parked(partition, partition.vcpus.len() - 1);
    let restarted = stop_or_restart(partition, request.kind, request.reason, &request.detail);
    if restarted {
        build::reset_devices(partition);
    }
    partition.control.finish_stop(restarted);
    for (other, slot) in partition.vcpus.iter().enumerate() {
        if other != index {
            slot.kick();
        }
    }
    if restarted {
        AfterStop::Restarted
    } else {
        apic::disarm_timer();
        halt_a_while();
        AfterStop::Ended
    }
}
