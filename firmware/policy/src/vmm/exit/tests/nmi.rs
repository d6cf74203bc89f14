//! NMI blocking (`vmm::nmi`) through the exit handler, as the vCPU loop drives it: an NMI
//! handler is not re-entered before its IRET, NMIs sent meanwhile merge into one, interrupt
//! shadows hold an NMI back — with the hypervisor tracking the handler (SVM: IRET intercept,
//! single step) or the CPU (VMX: blocking by NMI, NMI window).

use super::*;

/// The IRET at the end of the guest's NMI handler, and where it returns to.
const IRET: u64 = 0x5000;
const AFTER_IRET: u64 = 0x1234;

/// What the vCPU loop does before an entry: the NMI first, the exit armed after.
fn enter(cpu: &mut FakeVcpu, context: &mut VcpuContext) {
    context.nmi.inject(cpu);
    context.nmi.arm_exit(cpu);
}

/// The entry delivers what was queued; returns how many NMIs (a CPU that tracks NMI
/// blocking sets it for a delivered NMI).
fn deliver(cpu: &mut FakeVcpu) -> usize {
    let nmis = cpu.injected.iter().filter(|&&e| e == Event::Nmi).count();
    if nmis > 0 && cpu.nmi_blocking.is_some() {
        cpu.nmi_blocking = Some(true);
    }
    cpu.injected.clear();
    nmis
}

/// The guest exits with `exit` at `rip`.
fn exit_at(cpu: &mut FakeVcpu, context: &mut VcpuContext, rip: u64, exit: VmExit) {
    cpu.rip = rip;
    let machine = FakeMachine::new();
    assert_eq!(handle(cpu, context, &machine, exit, 0), Next::Resume);
}

#[test]
fn svm_holds_an_nmi_sent_in_the_handler_until_the_guest_is_past_its_iret() {
    let (mut cpu, mut context) = (FakeVcpu::default(), context());
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    assert_eq!(cpu.injected, [Event::Nmi]);
    assert_eq!(cpu.nmi_exit, Some(NmiExit::Iret));
    assert_eq!(deliver(&mut cpu), 1);
    // The handler sends itself an NMI: held back, the IRET intercept stays armed.
    exit_at(&mut cpu, &mut context, 0x4000, VmExit::PhysicalInterrupt);
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    assert!(cpu.injected.is_empty());
    assert_eq!(cpu.nmi_exit, Some(NmiExit::Iret));
    // The IRET intercept comes before the IRET runs: still blocked, one instruction stepped.
    exit_at(&mut cpu, &mut context, IRET, VmExit::Iret);
    enter(&mut cpu, &mut context);
    assert!(cpu.injected.is_empty());
    assert_eq!(cpu.nmi_exit, Some(NmiExit::Step));
    // An exit before the IRET ran (same RIP) leaves it blocked.
    exit_at(&mut cpu, &mut context, IRET, VmExit::PhysicalInterrupt);
    enter(&mut cpu, &mut context);
    assert!(cpu.injected.is_empty());
    assert_eq!(cpu.nmi_exit, Some(NmiExit::Step));
    // The step's exit lands past the IRET: the held NMI goes in at once.
    exit_at(&mut cpu, &mut context, AFTER_IRET, VmExit::NmiWindow);
    enter(&mut cpu, &mut context);
    assert_eq!(cpu.injected, [Event::Nmi]);
    assert_eq!(cpu.nmi_exit, Some(NmiExit::Iret));
    assert!(!context.nmi.pending());
}

#[test]
fn ten_nmis_sent_to_a_handler_give_one_more_run() {
    let (mut cpu, mut context) = (FakeVcpu::default(), context());
    let mut runs = 0;
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    runs += deliver(&mut cpu);
    for _ in 0..10 {
        exit_at(&mut cpu, &mut context, 0x4000, VmExit::PhysicalInterrupt);
        context.nmi.signal(1, &cpu);
        enter(&mut cpu, &mut context);
        runs += deliver(&mut cpu);
    }
    assert_eq!(runs, 1, "the handler was re-entered");
    // Both handler runs end with their IRET; nothing is left after the second.
    for _ in 0..2 {
        exit_at(&mut cpu, &mut context, IRET, VmExit::Iret);
        enter(&mut cpu, &mut context);
        exit_at(&mut cpu, &mut context, AFTER_IRET, VmExit::NmiWindow);
        enter(&mut cpu, &mut context);
        runs += deliver(&mut cpu);
    }
    assert_eq!(runs, 2);
    assert!(!context.nmi.pending() && !context.nmi.in_handler());
    assert_eq!(cpu.nmi_exit, Some(NmiExit::None));
}

#[test]
fn two_nmis_sent_together_outside_a_handler_run_it_twice_on_both_backends() {
    for blocking in [None, Some(false)] {
        let mut cpu = FakeVcpu {
            nmi_blocking: blocking,
            ..FakeVcpu::default()
        };
        let mut context = context();
        // Two arrive before the next entry (kvm-unit-tests' "multiple nmi"), and a third
        // merges: the first is delivered, the second waits behind it for its IRET.
        context.nmi.signal(2, &cpu);
        context.nmi.signal(1, &cpu);
        enter(&mut cpu, &mut context);
        let mut runs = deliver(&mut cpu);
        assert_eq!(runs, 1, "{blocking:?}");
        assert!(context.nmi.pending(), "{blocking:?}");
        // More sent inside the handler merge into the one pending.
        exit_at(&mut cpu, &mut context, 0x4000, VmExit::PhysicalInterrupt);
        context.nmi.signal(2, &cpu);
        enter(&mut cpu, &mut context);
        runs += deliver(&mut cpu);
        // The handler's IRET (SVM: intercepted, then stepped; VMX: the CPU's blocking ends).
        if blocking.is_some() {
            cpu.nmi_blocking = Some(false);
            exit_at(&mut cpu, &mut context, AFTER_IRET, VmExit::NmiWindow);
        } else {
            exit_at(&mut cpu, &mut context, IRET, VmExit::Iret);
            enter(&mut cpu, &mut context);
            exit_at(&mut cpu, &mut context, AFTER_IRET, VmExit::NmiWindow);
        }
        enter(&mut cpu, &mut context);
        runs += deliver(&mut cpu);
        assert_eq!(runs, 2, "{blocking:?}");
        assert!(!context.nmi.pending(), "{blocking:?}");
    }
}

#[test]
fn an_interrupt_shadow_holds_an_nmi_back_on_both_backends() {
    for (blocking, window) in [(None, NmiExit::Step), (Some(false), NmiExit::Window)] {
        let mut cpu = FakeVcpu {
            shadow: true,
            nmi_blocking: blocking,
            ..FakeVcpu::default()
        };
        let mut context = context();
        context.nmi.signal(1, &cpu);
        enter(&mut cpu, &mut context);
        assert!(cpu.injected.is_empty(), "NMI in a shadow ({blocking:?})");
        assert_eq!(cpu.nmi_exit, Some(window));
        // The shadowed instruction ran: the window's exit, then the NMI.
        cpu.shadow = false;
        exit_at(&mut cpu, &mut context, 0x1001, VmExit::NmiWindow);
        enter(&mut cpu, &mut context);
        assert_eq!(cpu.injected, [Event::Nmi]);
    }
}

#[test]
fn an_nmi_waits_behind_a_queued_event_and_svm_then_does_not_step() {
    let (mut cpu, mut context) = (FakeVcpu::default(), context());
    cpu.inject(Event::Interrupt(0x40));
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    assert_eq!(cpu.injected, [Event::Interrupt(0x40)]);
    // A step with an event queued would push RFLAGS.TF into the guest's interrupt frame.
    assert_eq!(cpu.nmi_exit, Some(NmiExit::None));
    deliver(&mut cpu);
    exit_at(&mut cpu, &mut context, 0x2000, VmExit::PhysicalInterrupt);
    enter(&mut cpu, &mut context);
    assert_eq!(cpu.injected, [Event::Nmi]);
}

#[test]
fn vmx_follows_the_cpus_blocking_by_nmi_and_arms_the_nmi_window() {
    let mut cpu = FakeVcpu {
        nmi_blocking: Some(false),
        ..FakeVcpu::default()
    };
    let mut context = context();
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    assert_eq!(deliver(&mut cpu), 1);
    // No IRET intercept on VMX: the CPU clears its blocking at IRET by itself.
    assert_eq!(cpu.nmi_exit, Some(NmiExit::None));
    for _ in 0..10 {
        exit_at(&mut cpu, &mut context, 0x4000, VmExit::PhysicalInterrupt);
        context.nmi.signal(1, &cpu);
        enter(&mut cpu, &mut context);
        assert_eq!(deliver(&mut cpu), 0);
        assert_eq!(cpu.nmi_exit, Some(NmiExit::Window));
    }
    // The IRET ran; the NMI window's exit brings the one merged NMI.
    cpu.nmi_blocking = Some(false);
    exit_at(&mut cpu, &mut context, AFTER_IRET, VmExit::NmiWindow);
    enter(&mut cpu, &mut context);
    assert_eq!(deliver(&mut cpu), 1);
    assert_eq!(cpu.nmi_exit, Some(NmiExit::None));
    assert!(!context.nmi.pending());
}

#[test]
fn a_halted_vcpu_wakes_only_for_an_nmi_it_may_take() {
    let (mut cpu, mut context) = (FakeVcpu::default(), context());
    assert!(!context.nmi.deliverable(&cpu));
    context.nmi.signal(1, &cpu);
    assert!(context.nmi.deliverable(&cpu));
    enter(&mut cpu, &mut context);
    deliver(&mut cpu);
    // HLT inside the handler with another NMI pending: it stays blocked until the IRET.
    context.nmi.signal(1, &cpu);
    assert!(!context.nmi.deliverable(&cpu));
}

#[test]
fn an_iret_outside_an_nmi_handler_changes_nothing() {
    let (mut cpu, mut context) = (FakeVcpu::default(), context());
    exit_at(&mut cpu, &mut context, IRET, VmExit::Iret);
    assert!(!context.nmi.in_handler());
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    assert_eq!(cpu.injected, [Event::Nmi]);
}

#[test]
fn a_fresh_start_forgets_the_handler_and_the_pending_nmi() {
    let (mut cpu, mut context) = (FakeVcpu::default(), context());
    context.nmi.signal(1, &cpu);
    enter(&mut cpu, &mut context);
    context.nmi.signal(1, &cpu);
    context.nmi.reset();
    assert!(!context.nmi.pending() && !context.nmi.in_handler());
}
