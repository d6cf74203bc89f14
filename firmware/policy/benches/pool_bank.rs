//! Pool operations per second of the hypercall pool bank (`cargo bench -p numavisor-policy
//! --bench pool_bank`): a parent deposits 64-page batches of its RAM into a child's pool and
//! withdraws them back into the same slots, plan and commit each time, as the edge does. One
//! operation is one page moved (deposit or withdrawal). Prints a single figure.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use numavisor_policy::hypercall::abi::PartitionId;
use numavisor_policy::hypercall::bank::{Backing, Bank, GuestSpace};

const PAGE: u64 = 4096;
const BATCH: u64 = 64;
const RAM_PAGES: u64 = 4096;

struct Space(BTreeMap<u64, Backing>);

impl GuestSpace for Space {
    fn backing(&self, partition: usize, gpa: u64) -> Option<Backing> {
        (partition == 0)
            .then(|| self.0.get(&gpa).copied())
            .flatten()
    }
}

fn main() {
    let mut bank = Bank::new(&[None, Some(0)]);
    let mut space = Space(
        (0..RAM_PAGES)
            .map(|p| {
                let backing = Backing {
                    spa: (1 << 30) + p * PAGE,
                    node: 0,
                    vnode: 0,
                };
                (p * PAGE, backing)
            })
            .collect(),
    );
    let child = PartitionId::Index(1);
    let rounds = 2_000u64;
    let start = Instant::now();
    for round in 0..rounds {
        let first = (round * BATCH) % RAM_PAGES;
        let gpas: Vec<u64> = (first..first + BATCH).map(|p| p * PAGE).collect();
        let plan = bank
            .plan_deposit(0, child, &gpas, &space)
            .expect("a parent's own pages");
        for m in plan.moves() {
            space.0.remove(&m.gpa);
        }
        bank.commit_deposit(plan);
        let plan = bank.plan_withdraw(0, child, &gpas).expect("its own slots");
        for m in plan.moves() {
            let backing = Backing {
                spa: m.spa,
                node: m.node,
                vnode: m.vnode,
            };
            space.0.insert(m.gpa, backing);
        }
        bank.commit_withdraw(black_box(plan));
    }
    let seconds = start.elapsed().as_secs_f64();
    let operations = rounds * BATCH * 2;
    println!(
        "pool bank: {operations} page moves in {seconds:.3} s: {:.0} pool operations per second \
         ({BATCH}-page calls, plan + commit, host model of the edge)",
        operations as f64 / seconds
    );
}
