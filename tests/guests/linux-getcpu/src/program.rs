//! The program itself (bare-metal target only).

use core::arch::{asm, global_asm};
use core::fmt::Write;

/// Linux x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const SCHED_YIELD: u64 = 24;
    pub const SCHED_SETAFFINITY: u64 = 203;
    pub const EXIT_GROUP: u64 = 231;
    pub const GETCPU: u64 = 309;
}

/// CPUs looked at: the partition's vCPUs are far fewer.
const MAX_CPUS: u32 = 64;

global_asm!(
    ".globl _start",
    "_start:",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym main,
);

fn syscall(number: u64, a: u64, b: u64, c: u64) -> i64 {
    let result: i64;
    // SAFETY: a Linux system call with three arguments; the kernel clobbers RCX and R11, and
    // reads or writes only the buffers the arguments name, which the callers own.
    unsafe {
        asm!("syscall", inlateout("rax") number as i64 => result, in("rdi") a, in("rsi") b,
            in("rdx") c, lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    result
}

fn exit(status: u64) -> ! {
    syscall(nr::EXIT_GROUP, status, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// The report line, built in place (no allocator).
struct Line {
    bytes: [u8; 4096],
    length: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.length + s.len();
        let room = self
            .bytes
            .get_mut(self.length..end)
            .ok_or(core::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.length = end;
        Ok(())
    }
}

/// Pins the process to `cpu`; false if the CPU is not there (or not online).
fn pin(cpu: u32) -> bool {
    let mask: u64 = 1 << cpu;
    let pinned = syscall(nr::SCHED_SETAFFINITY, 0, 8, &mask as *const u64 as u64) == 0;
    // Make sure the move happened before anything is read.
    syscall(nr::SCHED_YIELD, 0, 0, 0);
    pinned
}

fn getcpu() -> Option<(u32, u32)> {
    let (mut cpu, mut node) = (u32::MAX, u32::MAX);
    let status = syscall(
        nr::GETCPU,
        &mut cpu as *mut u32 as u64,
        &mut node as *mut u32 as u64,
        0,
    );
    (status == 0).then_some((cpu, node))
}

/// TSC_AUX through RDTSCP, if CPUID offers it.
fn rdtscp() -> Option<u32> {
    if core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) == 0 {
        return None;
    }
    let aux: u32;
    // SAFETY: CPUID says RDTSCP exists; it writes EDX:EAX and ECX only.
    unsafe { asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") aux, options(nomem, nostack)) };
    Some(aux)
}

/// TSC_AUX through RDPID, if CPUID offers it.
fn rdpid() -> Option<u32> {
    if core::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 22) == 0 {
        return None;
    }
    let aux: u64;
    // SAFETY: CPUID says RDPID exists (`F3 0F C7 /7`, RDPID RAX); it writes RAX only.
    unsafe { asm!(".byte 0xf3, 0x0f, 0xc7, 0xf8", out("rax") aux, options(nomem, nostack)) };
    Some(aux as u32)
}

/// Field 39 of `/proc/self/stat`: the CPU the process last ran on (proc(5)). Fields are
/// counted after the command name's closing parenthesis, which may itself hold spaces.
fn stat_cpu() -> Option<u32> {
    let path = b"/proc/self/stat\0";
    let fd = syscall(nr::OPEN, path.as_ptr() as u64, 0, 0);
    if fd < 0 {
        return None;
    }
    let mut buffer = [0u8; 1024];
    let read = syscall(
        nr::READ,
        fd as u64,
        buffer.as_mut_ptr() as u64,
        buffer.len() as u64,
    );
    syscall(nr::CLOSE, fd as u64, 0, 0);
    let text = core::str::from_utf8(buffer.get(..usize::try_from(read).ok()?)?).ok()?;
    let after_name = &text[text.rfind(')')? + 1..];
    // After ")" comes field 3 (state): field 39 is the 37th word.
    after_name.split_ascii_whitespace().nth(36)?.parse().ok()
}

fn pair(line: &mut Line, aux: Option<u32>) -> core::fmt::Result {
    match aux {
        // Linux's TSC_AUX: node << 12 | cpu.
        Some(aux) => write!(line, "[{},{}]", aux & 0xFFF, aux >> 12),
        None => line.write_str("null"),
    }
}

fn report() -> Result<Line, core::fmt::Error> {
    let mut line = Line {
        bytes: [0; 4096],
        length: 0,
    };
    line.write_str("@guest {\"event\":\"getcpu\",\"cpus\":[")?;
    let mut first = true;
    for cpu in 0..MAX_CPUS {
        if !pin(cpu) {
            continue;
        }
        if !first {
            line.write_str(",")?;
        }
        first = false;
        write!(line, "{{\"cpu\":{cpu},\"getcpu\":")?;
        match getcpu() {
            Some((cpu, node)) => write!(line, "[{cpu},{node}]")?,
            None => line.write_str("null")?,
        }
        line.write_str(",\"rdtscp\":")?;
        pair(&mut line, rdtscp())?;
        line.write_str(",\"rdpid\":")?;
        pair(&mut line, rdpid())?;
        match stat_cpu() {
            Some(stat) => write!(line, ",\"stat\":{stat}}}")?,
            None => line.write_str(",\"stat\":null}")?,
        }
    }
    line.write_str("]}\n")?;
    Ok(line)
}

extern "C" fn main() -> ! {
    match report() {
        Ok(line) => {
            syscall(nr::WRITE, 1, line.bytes.as_ptr() as u64, line.length as u64);
            exit(0)
        }
        Err(_) => exit(1),
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
