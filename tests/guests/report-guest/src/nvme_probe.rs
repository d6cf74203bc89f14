//! `mode=nvme [outside=0xADDR [repeat=N]]`: drives a passed-through NVMe controller (NVM Express Base
//! 2.0) the way a minimal driver does, with no interrupts: finds it on the virtual host
//! bridge's bus 0 through ECAM (`GUEST_ECAM_BASE`, as the guest's MCFG says), sizes its BAR 0
//! (the hypervisor shadows BARs), enables memory decoding and bus mastering, sets up the
//! admin queues in its own RAM and sends Identify Controller, polling the completion queue.
//! Prints `{"event":"pci_function",...}` for every function on the bus, then
//! `{"event":"nvme","serial":S,"model":M,"status":N}`. With `outside`, a second Identify
//! sends its data to that guest-physical address (outside the partition's RAM): the DMA
//! remapping unit must stop it (the hypervisor reports a `dma_fault`); the controller's
//! answer is printed as `{"event":"nvme_outside","address":A,"status":N}` (QEMU 7.2's
//! controller completes it with status 0 all the same); with `repeat`, that many times (a
//! guest whose device keeps faulting, which the hypervisor stops). With `deposit=ID` (a
//! parent's probe) and `balloon=1` (a dynamic partition's), it gives one page of its RAM away,
//! into partition ID's pool (hypercall 3) or to its balloon (its own polling driver,
//! [`crate::virtio_balloon`]), and sends Identify into that page, which its remapping domain
//! must no longer map (a `dma_fault`); then takes the page back (hypercall 4, or a
//! deflation) and sends Identify there again, and prints what its own CPU then reads in the
//! page: `{"event":"nvme_round","how":"deposit"|"balloon","address":A,"given":S,
//! "given_status":N,"back":S,"status":N,"serial":S}` (the serial number when the DMA reached
//! the page the guest sees). Exit status 0 when Identify succeeded, 1 otherwise.

use numavisor_policy::pci::guest_bus::GUEST_ECAM_BASE;

use crate::console::{exit, report, Json};
use crate::hw::{mmio_read, mmio_write};

/// Class code of an NVMe controller: mass storage, non-volatile memory, NVMe.
const NVME_CLASS: u32 = 0x01_08_02;
/// Controller registers (NVMe 2.0 §3.1.4).
const CAP: u64 = 0x00;
const CC: u64 = 0x14;
const CSTS: u64 = 0x1C;
const AQA: u64 = 0x24;
const ASQ: u64 = 0x28;
const ACQ: u64 = 0x30;
const DOORBELLS: u64 = 0x1000;
/// Admin queue entries (the minimum the specification allows is 2).
const QUEUE_ENTRIES: usize = 2;
/// Polls before a wait counts as failed (each is a VM exit or a memory read).
const MAX_POLLS: u32 = 50_000_000;
/// Identify's opcode and CNS value for the controller data structure.
const IDENTIFY: u32 = 0x06;
const CNS_CONTROLLER: u32 = 1;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The admin submission and completion queues and the Identify buffer, in the guest's RAM.
static mut SUBMISSIONS: Page = Page([0; 4096]);
static mut COMPLETIONS: Page = Page([0; 4096]);
static mut IDENTIFY_DATA: Page = Page([0; 4096]);
/// The page a parent's probe deposits and withdraws, and the hypercalls' list page.
static mut GIVEN: Page = Page([0; 4096]);
static mut LIST: Page = Page([0; 4096]);

fn config_address(device: u64, offset: u64) -> u64 {
    u64::from(GUEST_ECAM_BASE) + (device << 15) + offset
}

fn config_read(device: u64, offset: u64) -> u32 {
    mmio_read(config_address(device, offset))
}

fn config_write(device: u64, offset: u64, value: u32) {
    mmio_write(config_address(device, offset), value)
}

fn fail(step: &str) -> ! {
    report!(
        "{{\"event\":\"error\",\"what\":\"nvme\",\"step\":{}}}",
        Json(step)
    );
    exit(1)
}

/// How the probe gives one page of its RAM away and takes it back.
#[derive(Clone, Copy)]
pub enum GiveAway {
    /// Into this partition's pool (a child's ID), by hypercalls 3 and 4.
    Deposit(u64),
    /// To its own balloon: inflate, then deflate.
    Balloon,
}

/// Runs the probe.
pub fn run(outside: Option<u64>, repeat: u64, rounds: &[GiveAway]) -> ! {
    let mut found = None;
    for device in 0..32u64 {
        let id = config_read(device, 0);
        if id == u32::MAX {
            continue;
        }
        let class = config_read(device, 8) >> 8;
        report!(
            "{{\"event\":\"pci_function\",\"device\":{device},\"vendor\":{},\"id\":{},\"class\":\"{class:06x}\"}}",
            id & 0xFFFF,
            id >> 16
        );
        if class == NVME_CLASS && found.is_none() {
            found = Some(device);
        }
    }
    let Some(device) = found else {
        fail("no NVMe controller on bus 0")
    };
    let bar = bar0(device);
    // Memory space and bus master on.
    config_write(device, 4, 0x6);
    let status = identify(bar, addr_of_page(&raw const IDENTIFY_DATA), 1);
    // SAFETY: the controller wrote the buffer before posting the completion just read.
    let data = unsafe { (&raw const IDENTIFY_DATA).read_volatile() }.0;
    report!(
        "{{\"event\":\"nvme\",\"serial\":{},\"model\":{},\"status\":{status}}}",
        Json(text(&data, 4..24)),
        Json(text(&data, 24..64))
    );
    for &how in rounds {
        give_away_and_back(bar, how);
    }
    if let Some(address) = outside {
        for _ in 0..repeat.max(1) {
            let status = identify(bar, address, 2);
            report!("{{\"event\":\"nvme_outside\",\"address\":{address},\"status\":{status}}}");
        }
    }
    exit(if status == 0 { 0 } else { 1 })
}

/// The ASCII field `range` of Identify data, without its padding.
fn text(data: &[u8; 4096], range: core::ops::Range<usize>) -> &str {
    core::str::from_utf8(&data[range])
        .unwrap_or("?")
        .trim_end_matches([' ', '\0'])
}

/// Gives [`GIVEN`] away (`how`) and sends Identify into it (the domain must refuse the DMA),
/// then takes it back and sends Identify there again (the DMA must land in what the CPU
/// reads there now).
fn give_away_and_back(bar: u64, how: GiveAway) {
    let page = addr_of_page(&raw const GIVEN);
    let list = addr_of_page(&raw const LIST);
    // SAFETY: the list page is this guest's own; one entry, the page to move.
    unsafe { (&raw mut LIST).cast::<u64>().write_volatile(page) };
    let mut balloon = None;
    let (name, given) = match how {
        GiveAway::Deposit(child) => {
            let (code, moved, _) = crate::hypercalls::call(3, child, list, 1);
            let status = crate::hypercalls::status(code);
            ("deposit", if moved == 1 { status } else { "not-moved" })
        }
        GiveAway::Balloon => (
            "balloon",
            match crate::virtio_balloon::Balloon::init() {
                Ok(driver) => balloon
                    .insert(driver)
                    .send(crate::virtio_balloon::INFLATE, &[page])
                    .map_or_else(|e| e, |()| "success"),
                Err(e) => e,
            },
        ),
    };
    let given_status = if given == "success" {
        identify(bar, page, 3)
    } else {
        u32::MAX
    };
    let back = match (how, balloon.as_mut()) {
        (GiveAway::Deposit(child), _) => {
            let (code, moved, _) = crate::hypercalls::call(4, child, list, 1);
            let status = crate::hypercalls::status(code);
            if moved == 1 {
                status
            } else {
                "not-moved"
            }
        }
        (GiveAway::Balloon, Some(driver)) => driver
            .send(crate::virtio_balloon::DEFLATE, &[page])
            .map_or_else(|e| e, |()| "success"),
        (GiveAway::Balloon, None) => "no-balloon",
    };
    let (status, serial) = if back == "success" {
        let status = identify(bar, page, 4);
        // SAFETY: the page is this guest's again; the controller wrote it by DMA before
        // posting the completion just read.
        let data = unsafe { (&raw const GIVEN).read_volatile() }.0;
        (status, text(&data, 4..24).into())
    } else {
        (u32::MAX, alloc::string::String::new())
    };
    report!(
        "{{\"event\":\"nvme_round\",\"how\":\"{name}\",\"address\":{page},\"given\":{},\"given_status\":{given_status},\"back\":{},\"status\":{status},\"serial\":{}}}",
        Json(given),
        Json(back),
        Json(&serial)
    );
}

/// BAR 0's guest address, after a size probe that must show at least the 16 KiB registers
/// and doorbells of a controller; the BAR is restored.
fn bar0(device: u64) -> u64 {
    let low = config_read(device, 0x10);
    let wide = low & 0x6 == 0x4;
    let high = if wide { config_read(device, 0x14) } else { 0 };
    config_write(device, 0x10, u32::MAX);
    let mask = config_read(device, 0x10) & !0xF;
    config_write(device, 0x10, low);
    let size = (!mask).wrapping_add(1);
    report!(
        "{{\"event\":\"nvme_bar\",\"address\":{},\"size\":{size}}}",
        u64::from(high) << 32 | u64::from(low & !0xF)
    );
    if size < 0x1000 || low & !0xF == 0 {
        fail("BAR 0 is not a programmed memory BAR");
    }
    u64::from(high) << 32 | u64::from(low & !0xF)
}

fn addr_of_page(page: *const Page) -> u64 {
    page as u64
}

fn wait(bar: u64, ready: bool) -> bool {
    (0..MAX_POLLS).any(|_| (mmio_read(bar + CSTS) & 1 == 1) == ready)
}

/// Resets the controller, sets up the admin queues and sends one Identify Controller with
/// its data at `buffer`; the completion's status field (0: success).
fn identify(bar: u64, buffer: u64, command_id: u32) -> u32 {
    mmio_write(bar + CC, 0);
    if !wait(bar, false) {
        fail("CSTS.RDY stayed 1 after CC.EN = 0");
    }
    let cap = u64::from(mmio_read(bar + CAP)) | u64::from(mmio_read(bar + CAP + 4)) << 32;
    let stride = 4u64 << (cap >> 32 & 0xF);
    // SAFETY: the controller is disabled, so nothing else touches the queues.
    unsafe {
        (&raw mut SUBMISSIONS).write_bytes(0, 1);
        (&raw mut COMPLETIONS).write_bytes(0, 1);
    }
    let sq = addr_of_page(&raw const SUBMISSIONS);
    let cq = addr_of_page(&raw const COMPLETIONS);
    let entries = (QUEUE_ENTRIES - 1) as u32;
    mmio_write(bar + AQA, entries << 16 | entries);
    mmio_write(bar + ASQ, sq as u32);
    mmio_write(bar + ASQ + 4, (sq >> 32) as u32);
    mmio_write(bar + ACQ, cq as u32);
    mmio_write(bar + ACQ + 4, (cq >> 32) as u32);
    // Enabled; 64-byte submissions (2^6), 16-byte completions (2^4), 4 KiB pages.
    mmio_write(bar + CC, 1 | 6 << 16 | 4 << 20);
    if !wait(bar, true) {
        fail("CSTS.RDY never came after CC.EN = 1");
    }
    let mut command = [0u32; 16];
    command[0] = IDENTIFY | command_id << 16;
    command[6] = buffer as u32; // PRP entry 1.
    command[7] = (buffer >> 32) as u32;
    command[10] = CNS_CONTROLLER;
    // SAFETY: the queue page is the guest's own; volatile so the stores precede the doorbell.
    unsafe {
        let slot = (&raw mut SUBMISSIONS).cast::<u32>();
        for (i, word) in command.iter().enumerate() {
            slot.add(i).write_volatile(*word);
        }
    }
    mmio_write(bar + DOORBELLS, 1);
    // SAFETY: the completion page is the guest's own; the controller writes it by DMA.
    let status_word = unsafe { (&raw const COMPLETIONS).cast::<u32>().add(3) };
    for _ in 0..MAX_POLLS {
        // SAFETY: as above.
        let word = unsafe { status_word.read_volatile() };
        if word & 1 << 16 != 0 {
            mmio_write(bar + DOORBELLS + stride, 1);
            return word >> 17 & 0x7FFF;
        }
        core::hint::spin_loop();
    }
    fail("no completion for Identify")
}
