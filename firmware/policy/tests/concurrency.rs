//! The partition protocols under real threads: the memory-generation catch-up before a page
//! leaves a partition (`partition::memory_sync`) and the stop/park handshake
//! (`partition::stop_handshake`), each vCPU a thread, under many random interleavings.
//!
//! TCG flushes every TLB at every world switch, so no QEMU test can show a vCPU reaching a
//! page through a stale translation: these tests model what a vCPU may reach (its copy of the
//! RAM, until it renews it) and fail if a page is reused while any vCPU could still reach it.
//! Every test runs under a watchdog, so a deadlock fails with a message instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use numavisor_policy::partition::cpu_ops::CpuOps;
use numavisor_policy::partition::memory_sync::{MemoryGenerations, MemoryView};
use numavisor_policy::partition::stop_handshake::{AfterStop, StopHandshake};

/// Threads stand in for CPUs: a kick is counted, a pause yields (or spins a few rounds, so
/// that waits interleave differently).
#[derive(Default)]
struct ThreadCpus {
    kicks: AtomicUsize,
}

impl CpuOps for ThreadCpus {
    fn kick(&self, _vcpu: usize) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
    }
    fn pause(&self) {
        thread::yield_now();
    }
}

/// A small deterministic generator per thread (xorshift64*), so a failing seed can be rerun.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs `body` on a thread and fails the test if it does not end within `seconds`.
fn within<T: Send + 'static>(
    seconds: u64,
    what: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(body());
    });
    match finished.recv_timeout(Duration::from_secs(seconds)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no progress in {seconds} s (deadlock?)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: a thread panicked"),
    }
}

/// Pages a partition may reach, and whether each page has been reused elsewhere.
struct World {
    /// The partition's RAM (page numbers), guarded like the firmware's state lock.
    ram: Mutex<Arc<Vec<usize>>>,
    generations: MemoryGenerations,
    /// Page → given to someone else (a pool, free memory) after it left the partition.
    reused: Vec<AtomicBool>,
    /// Pages that left the partition and were reused, ready to come back (a deflation).
    outside: Mutex<Vec<usize>>,
    /// A lock shared with other partitions (the pool bank), never held across a wait.
    bank: Mutex<()>,
    cpus: ThreadCpus,
    violations: AtomicUsize,
    moves: AtomicU64,
}

/// How a mover waits for the others before it reuses pages: the protocol's own wait, or a
/// broken one (to show the checker catches it).
type Wait = fn(&World, usize, u64);

fn protocol_wait(world: &World, caller: usize, generation: u64) {
    world
        .generations
        .wait_caught_up(caller, generation, &world.cpus);
}

fn no_wait(_: &World, _: usize, _: u64) {}

impl World {
    fn new(pages: usize, vcpus: usize) -> World {
        World {
            ram: Mutex::new(Arc::new((0..pages).collect())),
            generations: MemoryGenerations::new(vcpus),
            reused: (0..pages).map(|_| AtomicBool::new(false)).collect(),
            outside: Mutex::new(Vec::new()),
            bank: Mutex::new(()),
            cpus: ThreadCpus::default(),
            violations: AtomicUsize::new(0),
            moves: AtomicU64::new(0),
        }
    }

    fn copy(&self) -> Arc<Vec<usize>> {
        self.ram.lock().unwrap().clone()
    }

    /// The guest runs on `copy`: it may reach every page in it (a stale TLB entry included).
    fn touch(&self, copy: &[usize]) {
        for &page in copy {
            if self.reused[page].load(Ordering::SeqCst) {
                self.violations.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Pages leave the partition (an inflation, a deposit) and are reused once `wait` says so.
    fn move_out(&self, vcpu: usize, rng: &mut Rng, wait: Wait) {
        let (taken, generation) = {
            let mut ram = self.ram.lock().unwrap();
            if ram.len() <= 2 {
                return;
            }
            let count = 1 + rng.below(3) as usize;
            let ram = Arc::make_mut(&mut ram);
            let taken: Vec<usize> = (0..count)
                .map(|_| ram.swap_remove(rng.below(ram.len() as u64) as usize))
                .collect();
            (taken, self.generations.bump())
        };
        wait(self, vcpu, generation);
        for &page in &taken {
            self.reused[page].store(true, Ordering::SeqCst);
        }
        self.outside.lock().unwrap().extend(taken);
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// Reused pages come back into the partition (a deflation, a withdrawal): no longer
    /// reused elsewhere, then mapped, then the others catch up.
    fn move_in(&self, vcpu: usize, wait: Wait) {
        let back: Vec<usize> = std::mem::take(&mut *self.outside.lock().unwrap());
        if back.is_empty() {
            return;
        }
        let generation = {
            let mut ram = self.ram.lock().unwrap();
            for &page in &back {
                self.reused[page].store(false, Ordering::SeqCst);
            }
            Arc::make_mut(&mut ram).extend(back);
            self.generations.bump()
        };
        wait(self, vcpu, generation);
    }

    /// The deposit's shape: the shared lock is taken (acknowledging while it waits) to plan,
    /// let go across the catch-up, and taken again to commit.
    fn deposit(&self, vcpu: usize, rng: &mut Rng, wait: Wait) {
        let guard = self
            .generations
            .wait_for(vcpu, &self.cpus, || self.bank.try_lock().ok());
        drop(guard);
        self.move_out(vcpu, rng, wait);
        let _commit = self
            .generations
            .wait_for(vcpu, &self.cpus, || self.bank.try_lock().ok());
    }
}

/// One vCPU: guest runs on its copy, checkpoints, idle waits, moves of its own.
fn vcpu_thread(world: Arc<World>, vcpu: usize, seed: u64, steps: usize, wait: Wait) {
    let mut rng = Rng::new(seed);
    let (mut view, mut copy): (MemoryView, Arc<Vec<usize>>) =
        world.generations.start(vcpu, || world.copy());
    for _ in 0..steps {
        match rng.below(10) {
            0 => world.move_out(vcpu, &mut rng, wait),
            1 => world.move_in(vcpu, wait),
            2 => world.deposit(vcpu, &mut rng, wait),
            3 => {
                // An idle wait: no guest memory is used until the next renew.
                world.generations.acknowledge(vcpu);
                for _ in 0..rng.below(4) {
                    thread::yield_now();
                }
            }
            4 => {
                // The epoch ends and a new one starts (a park, a restart).
                world.generations.leave(vcpu);
                thread::yield_now();
                (view, copy) = world.generations.start(vcpu, || world.copy());
            }
            _ => {}
        }
        // The checkpoint before the next entry, then the guest runs.
        if let Some(fresh) = world.generations.renew(&mut view, || world.copy()) {
            copy = fresh;
        }
        world.touch(&copy);
    }
    world.generations.leave(vcpu);
}

fn run_world(vcpus: usize, seed: u64, steps: usize, wait: Wait) -> Arc<World> {
    let world = Arc::new(World::new(64, vcpus));
    let threads: Vec<_> = (0..vcpus)
        .map(|vcpu| {
            let world = world.clone();
            thread::spawn(move || vcpu_thread(world, vcpu, seed * 31 + vcpu as u64, steps, wait))
        })
        .collect();
    for thread in threads {
        thread.join().expect("a vCPU thread panicked");
    }
    world
}

#[test]
fn no_page_is_reused_while_a_vcpu_can_still_reach_it() {
    within(120, "random interleavings", || {
        for seed in 1..=200 {
            let vcpus = 2 + (seed as usize % 3);
            let world = run_world(vcpus, seed, 1000, protocol_wait);
            assert_eq!(
                world.violations.load(Ordering::SeqCst),
                0,
                "seed {seed}, {vcpus} vCPUs: a page was reused while a vCPU could reach it"
            );
            assert!(
                world.moves.load(Ordering::Relaxed) > 0,
                "seed {seed}: nothing moved"
            );
        }
    });
}

#[test]
fn the_checker_catches_a_mover_that_does_not_wait() {
    // The interleaving a missing catch-up allows, made on purpose (random worlds without the
    // wait show it only when the threads happen to overlap, which a loaded machine may never
    // let them do): vCPU 1 holds its copy of the RAM, vCPU 0 takes pages out and reuses them
    // at once, and vCPU 1's guest runs on its copy before its next checkpoint. The checker
    // must count that, or the test above could pass on a broken protocol.
    let world = World::new(64, 2);
    let (_, _) = world.generations.start(0, || world.copy());
    let (mut view, stale) = world.generations.start(1, || world.copy());
    world.move_out(0, &mut Rng::new(7), no_wait);
    world.touch(&stale);
    assert!(
        world.violations.load(Ordering::SeqCst) > 0,
        "no violation seen although the mover never waited"
    );
    // With its checkpoint first, the same guest reaches nothing reused.
    let before = world.violations.load(Ordering::SeqCst);
    let fresh = world
        .generations
        .renew(&mut view, || world.copy())
        .expect("the generation moved");
    world.touch(&fresh);
    assert_eq!(world.violations.load(Ordering::SeqCst), before);
}

/// The interleaving that deadlocked: vCPUs 0 and 1 move pages at the same moment (an
/// inflation and a deflation, or two deposits); each waits for the other to catch up.
#[test]
fn two_vcpus_moving_pages_at_once_both_finish() {
    for round in 0..200 {
        let world = Arc::new(World::new(64, 2));
        let both_bumped = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|vcpu| {
                let (world, both_bumped) = (world.clone(), both_bumped.clone());
                thread::spawn(move || {
                    let (_view, _copy) = world.generations.start(vcpu, || world.copy());
                    // Both hold a copy of the same generation before either moves.
                    both_bumped.wait();
                    let generation = {
                        let mut ram = world.ram.lock().unwrap();
                        Arc::make_mut(&mut ram).pop();
                        world.generations.bump()
                    };
                    // Both have bumped before either waits: the exact interleaving.
                    both_bumped.wait();
                    world
                        .generations
                        .wait_caught_up(vcpu, generation, &world.cpus);
                    world.generations.leave(vcpu);
                })
            })
            .collect();
        within(10, &format!("round {round}: two movers"), move || {
            for thread in threads {
                thread.join().expect("a mover panicked");
            }
        });
    }
}

/// A vCPU that waits for the shared lock while another vCPU of its partition moves pages:
/// the mover must not wait for ever on the lock's waiter, and the waiter gets the lock.
#[test]
fn a_vcpu_waiting_for_the_bank_lets_a_mover_of_its_partition_finish() {
    for round in 0..100 {
        let world = Arc::new(World::new(64, 2));
        let holder = world.bank.lock().unwrap();
        let waiter = {
            let world = world.clone();
            thread::spawn(move || {
                let (_view, _copy) = world.generations.start(1, || world.copy());
                let _guard = world
                    .generations
                    .wait_for(1, &world.cpus, || world.bank.try_lock().ok());
                world.generations.leave(1);
            })
        };
        let mover = {
            let world = world.clone();
            thread::spawn(move || {
                let (_view, _copy) = world.generations.start(0, || world.copy());
                let mut rng = Rng::new(round);
                world.move_out(0, &mut rng, protocol_wait);
                world.generations.leave(0);
            })
        };
        within(
            10,
            &format!("round {round}: mover beside a lock waiter"),
            move || {
                mover.join().expect("the mover panicked");
            },
        );
        drop(holder);
        within(10, &format!("round {round}: the lock waiter"), move || {
            waiter.join().expect("the waiter panicked");
        });
    }
}

/// The scripted case the random test relies on: a vCPU holds a copy with page P while P
/// leaves; the mover may reuse P only after that vCPU renewed.
#[test]
fn a_page_waits_for_the_slowest_vcpu() {
    for (wait, expect_violation) in [(protocol_wait as Wait, false), (no_wait as Wait, true)] {
        let world = Arc::new(World::new(4, 2));
        let (bumped_tx, bumped) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let slow = {
            let world = world.clone();
            thread::spawn(move || {
                let (mut view, copy) = world.generations.start(1, || world.copy());
                started_tx.send(()).unwrap();
                // The guest runs on its old copy until the mover has moved page(s) out...
                bumped.recv().unwrap();
                // ...for a while: a mover that does not wait reuses the page meanwhile.
                let until = std::time::Instant::now() + Duration::from_millis(200);
                while std::time::Instant::now() < until && world.moves.load(Ordering::SeqCst) == 0 {
                    world.touch(&copy);
                    thread::yield_now();
                }
                world.touch(&copy);
                let fresh = world.generations.renew(&mut view, || world.copy());
                world.touch(&fresh.expect("the generation moved"));
                world.generations.leave(1);
            })
        };
        let mover = {
            let world = world.clone();
            thread::spawn(move || {
                let (_view, _copy) = world.generations.start(0, || world.copy());
                started.recv().unwrap();
                let generation = {
                    let mut ram = world.ram.lock().unwrap();
                    Arc::make_mut(&mut ram).retain(|&p| p != 0);
                    world.generations.bump()
                };
                bumped_tx.send(()).unwrap();
                wait(&world, 0, generation);
                world.reused[0].store(true, Ordering::SeqCst);
                world.moves.fetch_add(1, Ordering::SeqCst);
                world.generations.leave(0);
            })
        };
        within(10, "the slow vCPU", move || {
            mover.join().unwrap();
            slow.join().unwrap();
        });
        let violations = world.violations.load(Ordering::SeqCst);
        assert_eq!(
            violations > 0,
            expect_violation,
            "violations {violations} (a mover that waits must see none; one that does not, some)"
        );
    }
}

/// Partition lives: vCPUs run, any of them stops the partition now and then (restart or
/// end); while the stopper works, no other vCPU runs guest code; every vCPU ends when the
/// partition does. Page moves run beside the stops.
#[test]
fn a_stop_waits_for_every_vcpu_to_park_and_all_end_together() {
    within(120, "stop handshake", || {
        for seed in 1..=30 {
            stop_round(seed, 2 + (seed as usize % 3));
        }
    });
}

fn stop_round(seed: u64, vcpus: usize) {
    let handshake = Arc::new(StopHandshake::default());
    let world = Arc::new(World::new(64, vcpus));
    let in_guest = Arc::new(AtomicUsize::new(0));
    let lives = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..vcpus)
        .map(|vcpu| {
            let (handshake, world, in_guest, lives) = (
                handshake.clone(),
                world.clone(),
                in_guest.clone(),
                lives.clone(),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(seed * 97 + vcpu as u64);
                loop {
                    let epoch = handshake.epoch();
                    let (mut view, mut copy) = world.generations.start(vcpu, || world.copy());
                    // One life: runs until a stop is asked (park) or this vCPU stops it.
                    let stops_it = loop {
                        if handshake.stop_requested() {
                            break false;
                        }
                        in_guest.fetch_add(1, Ordering::SeqCst);
                        world.touch(&copy);
                        in_guest.fetch_sub(1, Ordering::SeqCst);
                        match rng.below(50) {
                            0 => break true,
                            1 => world.move_out(vcpu, &mut rng, protocol_wait),
                            2 => world.move_in(vcpu, protocol_wait),
                            _ => thread::yield_now(),
                        }
                        if let Some(fresh) = world.generations.renew(&mut view, || world.copy()) {
                            copy = fresh;
                        }
                    };
                    world.generations.leave(vcpu);
                    let after = if stops_it && handshake.begin_stop() {
                        handshake.wait_parked(vcpus - 1, &world.cpus, |_| {});
                        assert_eq!(
                            in_guest.load(Ordering::SeqCst),
                            0,
                            "a vCPU ran guest code while its partition stopped"
                        );
                        let restart = lives.fetch_add(1, Ordering::SeqCst) < 5;
                        handshake.finish_stop(restart);
                        if restart {
                            AfterStop::Restarted
                        } else {
                            AfterStop::Ended
                        }
                    } else {
                        handshake.park(epoch, &world.cpus)
                    };
                    if after == AfterStop::Ended {
                        return;
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a vCPU thread panicked");
    }
    assert!(handshake.ended(), "seed {seed}: the partition did not end");
    assert_eq!(
        lives.load(Ordering::SeqCst),
        6,
        "seed {seed}: five restarts, then the end"
    );
    assert_eq!(
        world.violations.load(Ordering::SeqCst),
        0,
        "seed {seed}: a page was reused while a vCPU could reach it"
    );
}
