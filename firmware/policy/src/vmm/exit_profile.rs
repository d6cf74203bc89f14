//! Where the instructions of a VM exit go (`profile=exits` on the hypervisor's command line):
//! the vCPU loop marks the end of each stage with the TSC, which under QEMU's `-icount
//! shift=0` counts instructions, and the sums per stage are reported when every partition has
//! stopped (`exit_profile` event; `cargo xtask bench` prints them). Off, the loop pays one
//! branch per stage.

/// The stages of one pass of the vCPU loop, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Stop and time-limit checks, memory catch-up, network backlog, INIT/SIPI.
    Checks,
    /// vCPU 0's platform timers (PIT, RTC, ACPI PM) and Dynamic Memory.
    Platform,
    /// Moving a pending NMI or interrupt into the guest.
    Inject,
    /// The next deadline, and the host timer armed for it.
    Arm,
    /// The guest's run: world switch in and out, and the guest's own instructions.
    Run,
    /// After the exit: memory catch-up, counting, a host interrupt taken.
    After,
    /// The exit handler (`vmm::exit::handle`): the device, CPUID or MSR answer.
    Handle,
}

impl Stage {
    /// Every stage, in loop order.
    pub const ALL: [Stage; 7] = [
        Stage::Checks,
        Stage::Platform,
        Stage::Inject,
        Stage::Arm,
        Stage::Run,
        Stage::After,
        Stage::Handle,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Checks => "checks",
            Stage::Platform => "platform",
            Stage::Inject => "inject",
            Stage::Arm => "arm",
            Stage::Run => "run",
            Stage::After => "after",
            Stage::Handle => "handle",
        }
    }
}

/// One vCPU's running sums.
#[derive(Clone, Debug, Default)]
pub struct ExitProfile {
    enabled: bool,
    last: u64,
    /// TSC ticks per stage, in [`Stage::ALL`] order.
    pub ticks: [u64; Stage::ALL.len()],
    /// Passes through the loop that reached the guest.
    pub passes: u64,
    /// Heap allocations made while those passes ran, from the start of a pass to the end of
    /// its handler ([`ExitProfile::count_allocations`]). The exit path should make none.
    pub allocations: u64,
}

impl ExitProfile {
    /// A profile that records only if `enabled`.
    pub const fn new(enabled: bool) -> ExitProfile {
        ExitProfile {
            enabled,
            last: 0,
            ticks: [0; Stage::ALL.len()],
            passes: 0,
            allocations: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts a pass at TSC `now`.
    pub fn start(&mut self, now: impl FnOnce() -> u64) {
        if self.enabled {
            self.last = now();
        }
    }

    /// Ends `stage` at TSC `now` (read only when recording).
    pub fn mark(&mut self, stage: Stage, now: impl FnOnce() -> u64) {
        if !self.enabled {
            return;
        }
        let now = now();
        self.ticks[stage as usize] += now.wrapping_sub(self.last);
        self.last = now;
        if stage == Stage::Run {
            self.passes += 1;
        }
    }

    /// Adds the heap's allocations between two readings of its counter (`before` at a pass's
    /// start, `after` at its handler's end) when recording.
    pub fn count_allocations(&mut self, before: u64, after: u64) {
        if self.enabled {
            self.allocations += after.wrapping_sub(before);
        }
    }

    /// Adds `other`'s sums to this one.
    pub fn add(&mut self, other: &ExitProfile) {
        for (sum, ticks) in self.ticks.iter_mut().zip(other.ticks) {
            *sum += ticks;
        }
        self.passes += other.passes;
        self.allocations += other.allocations;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_and_nothing_is_read_when_off() {
        let mut on = ExitProfile::new(true);
        let mut clock = 100;
        let mut tick = |by: u64| {
            clock += by;
            clock
        };
        on.start(|| tick(0));
        for (stage, cost) in Stage::ALL.into_iter().zip([5, 1, 3, 4, 50, 2, 20]) {
            on.mark(stage, || tick(cost));
        }
        assert_eq!(on.ticks, [5, 1, 3, 4, 50, 2, 20]);
        assert_eq!(on.passes, 1);
        on.count_allocations(7, 9);
        assert_eq!(on.allocations, 2);
        let mut off = ExitProfile::new(false);
        off.start(|| panic!("the TSC is not read when off"));
        off.mark(Stage::Run, || panic!("the TSC is not read when off"));
        assert_eq!(off.passes, 0);
        let mut sum = ExitProfile::default();
        sum.add(&on);
        sum.add(&on);
        assert_eq!(sum.ticks[Stage::Run as usize], 100);
        assert_eq!(sum.passes, 2);
        assert_eq!(sum.allocations, 4);
        off.count_allocations(0, 5);
        assert_eq!(off.allocations, 0);
        assert_eq!(Stage::Handle.name(), "handle");
    }
}
