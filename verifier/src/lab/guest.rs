//! The lab's running guest: a real Linux kernel and a small initramfs whose
//! `/init` dirties a working set at a set rate, so pre-copy iterates (and
//! converges, or not) as it does for a busy VM.
//!
//! The parts come from Debian packages (`cargo xtask setup` puts them in
//! `.tools/guest/`): the kernel of `linux-image-cloud-amd64` as `vmlinuz`
//! and the static busybox of `busybox-static` as `busybox`. The initramfs
//! (newc cpio, gzip) is made here, at `lab up`, into the lab's state folder:
//! busybox, `/dev/console` and the init script embedded in this binary.

use std::{
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{LabError, Progress};

/// The guest's `/init` (a busybox shell script).
pub const INIT: &str = include_str!("guest/init");

/// The console line the init prints once the working set is filled and
/// dirtying starts; the lab starts the migration after it.
pub const DIRTYING_LINE: &str = "mv: dirtying";

/// The first line the init prints: the kernel reached user space.
pub const INIT_LINE: &str = "mv: init";

/// Folder with `vmlinuz` and `busybox`, overriding the search below.
pub const GUEST_DIR_ENV: &str = "MIGVERIFY_GUEST_DIR";

/// Where `cargo xtask setup` puts the parts, in the source tree this binary
/// was built from.
const BUILD_TREE_GUEST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/guest");

/// What Debian's `busybox-static` installs.
const SYSTEM_BUSYBOX: &str = "/bin/busybox";

/// The initramfs, in the lab's state folder.
pub const INITRD_FILE: &str = "guest-initrd.gz";

/// The accelerator the running guest was found to boot under, cached in the
/// state folder for the lab's lifetime.
const ACCEL_FILE: &str = "guest-accel";

/// The kernel and busybox the running guest is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestParts {
    pub kernel: PathBuf,
    pub busybox: PathBuf,
}

impl GuestParts {
    /// `$MIGVERIFY_GUEST_DIR`, else the build tree's `.tools/guest/`; for
    /// busybox also `/bin/busybox` when it is static (Debian's
    /// `busybox-static`).
    pub fn find() -> Result<GuestParts, LabError> {
        let dirs: Vec<PathBuf> = match std::env::var_os(GUEST_DIR_ENV) {
            Some(dir) => vec![PathBuf::from(dir)],
            None => vec![PathBuf::from(BUILD_TREE_GUEST_DIR)],
        };
        let kernel = dirs.iter().map(|d| d.join("vmlinuz")).find(|p| p.is_file());
        let busybox = dirs
            .iter()
            .map(|d| d.join("busybox"))
            .chain(std::iter::once(PathBuf::from(SYSTEM_BUSYBOX)))
            .find(|p| p.is_file() && is_static_elf(p));
        let searched = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match (kernel, busybox) {
            (Some(kernel), Some(busybox)) => Ok(GuestParts { kernel, busybox }),
            (kernel, busybox) => {
                let mut missing = Vec::new();
                if kernel.is_none() {
                    missing.push("vmlinuz (from linux-image-cloud-amd64)");
                }
                if busybox.is_none() {
                    missing.push("a static busybox (from busybox-static)");
                }
                Err(LabError::Io(format!(
                    "the running guest needs {}; looked in {searched}{}. \
                     `cargo xtask setup` puts them in .tools/guest/, or set {GUEST_DIR_ENV} \
                     to a folder holding vmlinuz and busybox",
                    missing.join(" and "),
                    if busybox.is_none() {
                        format!(" and {SYSTEM_BUSYBOX}")
                    } else {
                        String::new()
                    }
                )))
            }
        }
    }
}

/// Whether `path` is an ELF executable that needs no loader (no PT_INTERP):
/// the initramfs has no libc.
fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = fs::read(path) else {
        return false;
    };
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    !(0..phnum).any(|i| {
        let at = phoff.saturating_add(i * phentsize);
        at + 4 <= elf.len() && elf[at..at + 4] == PT_INTERP.to_le_bytes()
    })
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as an
/// initramfs. Names are relative ("init", "bin/busybox"); each file's header
/// and data are padded to 4 bytes, the archive ends with `TRAILER!!!` and is
/// padded to 512 bytes.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    pub fn new() -> Self {
        Cpio {
            bytes: Vec::new(),
            next_inode: 1,
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> &mut Self {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[])
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> &mut Self {
        let inode = self.next_inode;
        self.next_inode += 1;
        let size = u32::try_from(data.len()).expect("cpio newc files are below 4 GiB");
        let fields = [
            inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // with its NUL
            0,                     // check (only for "070702")
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad(4);
        self.bytes.extend_from_slice(data);
        self.pad(4);
        self
    }

    fn pad(&mut self, to: usize) {
        let len = self.bytes.len().next_multiple_of(to);
        self.bytes.resize(len, 0);
    }

    /// The archive, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.pad(512);
        self.bytes
    }
}

/// The initramfs, uncompressed: busybox, the console device the kernel opens
/// for init (devtmpfs is mounted later, by init itself), and `/init`.
pub fn initramfs(busybox: &[u8]) -> Vec<u8> {
    let mut cpio = Cpio::new();
    cpio.dir("bin", 0o755)
        .dir("dev", 0o755)
        .char_device("dev/console", 0o600, 5, 1)
        .char_device("dev/null", 0o666, 1, 3)
        .file("bin/busybox", 0o755, busybox)
        .file("init", 0o755, INIT.as_bytes());
    cpio.finish()
}

/// Writes the gzip-compressed initramfs to `path`.
pub fn write_initrd(parts: &GuestParts, path: &Path) -> Result<(), LabError> {
    let busybox = fs::read(&parts.busybox)
        .map_err(|e| LabError::Io(format!("reading {}: {e}", parts.busybox.display())))?;
    let io = |e: std::io::Error| LabError::Io(format!("writing {}: {e}", path.display()));
    let file = File::create(path).map_err(io)?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(&initramfs(&busybox)).map_err(io)?;
    gz.finish().map_err(io)?.sync_all().map_err(io)
}

/// The kernel command line: the serial console, no EDD probing (slow under
/// TCG), and the init's two parameters.
pub fn cmdline(dirty_rate_mib_s: u64, working_set_mib: u64) -> String {
    format!(
        "console=ttyS0 edd=off quiet panic=-1 mv.dirty_rate={dirty_rate_mib_s} mv.working_set={working_set_mib}"
    )
}

/// Guest RAM the kernel and init need besides the working set, MiB
/// (measured: the cloud kernel with this initramfs uses ~20 MiB after boot;
/// the rest is headroom for page cache and the tmpfs's own bookkeeping).
pub const GUEST_OVERHEAD_MIB: u64 = 96;

/// How the running guest boots: kernel, initramfs and command line, the same
/// on source and target (QEMU's option ROMs and fw_cfg must match for the
/// migration), and the accelerator it works under here.
#[derive(Clone, Debug)]
pub struct GuestBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub accel: Accel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// QEMU's options for it.
    pub fn qemu_args(self) -> &'static [&'static str] {
        match self {
            // arch-capabilities=off: KVM refuses to set MSR 0x10a on the
            // nested hosts the lab runs on.
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host,arch-capabilities=off"],
            Accel::Tcg => &["-accel", "tcg"],
        }
    }
}

/// Makes the initramfs (once per lab) and finds the accelerator a Linux
/// guest boots under here (once per lab): idempotent, called by `lab up`
/// and again by `lab migrate`.
pub fn prepare(state: &Path, progress: Progress) -> Result<GuestBoot, LabError> {
    let parts = GuestParts::find()?;
    let initrd = state.join(INITRD_FILE);
    if !initrd.is_file() {
        progress(&format!(
            "making the guest's initramfs ({} with {})",
            initrd.display(),
            parts.busybox.display()
        ));
        write_initrd(&parts, &initrd)?;
    }
    let cached = state.join(ACCEL_FILE);
    let accel = match fs::read_to_string(&cached).ok().as_deref().map(str::trim) {
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg,
        _ => {
            let accel = probe_accel(&parts.kernel, &initrd, state, progress);
            fs::write(&cached, accel.name())
                .map_err(|e| LabError::Io(format!("writing {}: {e}", cached.display())))?;
            accel
        }
    };
    Ok(GuestBoot {
        kernel: parts.kernel,
        initrd,
        accel,
    })
}

/// How long a kernel under KVM may take to reach init before KVM is taken
/// to be one where Linux does not boot (TCG takes ~2 s here).
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// KVM when a Linux guest reaches its init under it, TCG otherwise. On the
/// nested hosts the lab was built on, SeaBIOS runs under KVM but the kernel
/// hangs right after the boot loader, without a line on the console.
fn probe_accel(kernel: &Path, initrd: &Path, state: &Path, progress: Progress) -> Accel {
    if !super::qemu::kvm_usable() {
        progress("running guest: no usable /dev/kvm, using TCG");
        return Accel::Tcg;
    }
    let log = state.join("guest-kvm-probe.log");
    let started = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(["-name", "mvlab-probe,process=mvlab-probe"])
        .args(Accel::Kvm.qemu_args())
        .args([
            "-machine",
            "q35",
            "-m",
            "256M",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &cmdline(0, 1)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Accel::Tcg;
    };
    let reached = loop {
        if fs::read_to_string(&log).is_ok_and(|l| l.contains(INIT_LINE)) {
            break true;
        }
        if started.elapsed() >= KVM_PROBE_TIMEOUT || matches!(child.try_wait(), Ok(Some(_))) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    if reached {
        progress(&format!(
            "running guest: Linux boots under KVM here ({:.1} s to init)",
            started.elapsed().as_secs_f64()
        ));
        Accel::Kvm
    } else {
        progress(&format!(
            "running guest: Linux does not reach its init under KVM here within {KVM_PROBE_TIMEOUT:.0?} \
             (nested virtualisation); using TCG"
        ));
        Accel::Tcg
    }
}

/// Waits until the guest's console log holds `line`; fails when QEMU exits
/// or `timeout` passes, quoting the end of the log.
pub fn wait_for_console(
    log: &Path,
    line: &str,
    timeout: Duration,
    mut exited: impl FnMut() -> bool,
) -> Result<Duration, LabError> {
    let started = Instant::now();
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains(line) {
            return Ok(started.elapsed());
        }
        let why = if exited() {
            "QEMU exited"
        } else if started.elapsed() >= timeout {
            "timed out"
        } else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(LabError::Qemu(format!(
            "the running guest never printed {line:?} ({why} after {:.1} s); end of {}:\n{}",
            started.elapsed().as_secs_f64(),
            log.display(),
            tail.join("\n")
        )));
    }
}

/// Sums the init's "mv: dirtied N MiB in S.Ds" reports in `console`:
/// (MiB, seconds).
pub fn dirtied_reports(console: &str) -> (u64, f64) {
    console
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("mv: dirtied ")?;
            let (mib, rest) = rest.split_once(" MiB in ")?;
            let (seconds, _) = rest.split_once('s')?;
            Some((mib.parse::<u64>().ok()?, seconds.parse::<f64>().ok()?))
        })
        .fold((0, 0.0), |(m, s), (mib, secs)| (m + mib, s + secs))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// One parsed newc entry: (name, mode, rdevmajor, rdevminor, data).
    type Entry = (String, u32, u32, u32, Vec<u8>);

    fn parse(mut bytes: &[u8]) -> Vec<Entry> {
        let total = bytes.len();
        let mut entries = Vec::new();
        loop {
            let at = total - bytes.len();
            assert_eq!(at % 4, 0, "entry at {at} is 4-aligned");
            assert_eq!(&bytes[..6], b"070701");
            let field = |i: usize| {
                let hex = std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(hex, 16).unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            assert_eq!(bytes[name_end - 1], 0, "name ends with NUL");
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .unwrap()
                .to_string();
            let data_at = name_end.next_multiple_of(4);
            let data = bytes[data_at..data_at + size as usize].to_vec();
            bytes = &bytes[(data_at + size as usize).next_multiple_of(4)..];
            let end = name == "TRAILER!!!";
            entries.push((name, mode, rmaj, rmin, data));
            if end {
                break;
            }
        }
        assert!(
            bytes.iter().all(|b| *b == 0),
            "only padding after the trailer"
        );
        entries
    }

    #[test]
    fn cpio_newc_round_trips_names_modes_devices_and_data() {
        let mut cpio = Cpio::new();
        cpio.dir("bin", 0o755)
            .char_device("dev/console", 0o600, 5, 1)
            .file("a", 0o644, b"")
            .file("bin/odd", 0o755, b"12345")
            .file("init", 0o755, b"#!/bin/sh\n");
        let bytes = cpio.finish();
        assert_eq!(bytes.len() % 512, 0);
        let entries = parse(&bytes);
        let summary: Vec<(&str, u32, u32, u32, &[u8])> = entries
            .iter()
            .map(|(n, m, a, b, d)| (n.as_str(), *m, *a, *b, d.as_slice()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("bin", 0o040755, 0, 0, &b""[..]),
                ("dev/console", 0o020600, 5, 1, b""),
                ("a", 0o100644, 0, 0, b""),
                ("bin/odd", 0o100755, 0, 0, b"12345"),
                ("init", 0o100755, 0, 0, b"#!/bin/sh\n"),
                ("TRAILER!!!", 0, 0, 0, b""),
            ]
        );
    }

    #[test]
    fn cpio_header_is_the_kernels_layout() {
        let mut cpio = Cpio::new();
        cpio.file("x", 0o644, b"yz");
        let bytes = cpio.finish();
        // magic, ino 1, mode, uid, gid, nlink 1, mtime, size 2, dev 0:0,
        // rdev 0:0, namesize 2 ("x\0"), check 0; then "x\0" at 110,
        // padded to 112, the data, padded to 116.
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        let expected = [
            "070701",   // magic
            "00000001", // ino
            "000081A4", // mode: regular, 0644
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "00000002", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000002", // namesize, NUL included
            "00000000", // check
        ]
        .concat();
        assert_eq!(header, expected);
        assert_eq!(&bytes[110..116], b"x\0yz\0\0");
        assert_eq!(&bytes[116..122], b"070701");
    }

    #[test]
    fn initramfs_holds_init_busybox_and_the_console() {
        let archive = initramfs(b"\x7fELF-busybox");
        let entries = parse(&archive);
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| e.0 == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(find("init").4, INIT.as_bytes());
        assert_eq!(find("init").1, 0o100755);
        assert_eq!(find("bin/busybox").4, b"\x7fELF-busybox");
        assert_eq!(
            (
                find("dev/console").1,
                find("dev/console").2,
                find("dev/console").3
            ),
            (0o020600, 5, 1)
        );
        assert!(INIT.starts_with("#!/bin/busybox sh\n"));
        assert!(INIT.contains(DIRTYING_LINE) && INIT.contains(INIT_LINE));
    }

    #[test]
    fn initrd_is_gzip_of_the_archive() {
        let dir = std::env::temp_dir().join(format!("mv-guest-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let busybox = dir.join("busybox");
        fs::write(&busybox, b"not really busybox").unwrap();
        let parts = GuestParts {
            kernel: dir.join("vmlinuz"),
            busybox,
        };
        let initrd = dir.join("initrd.gz");
        write_initrd(&parts, &initrd).unwrap();
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(File::open(&initrd).unwrap())
            .read_to_end(&mut unpacked)
            .unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(unpacked, initramfs(b"not really busybox"));
    }

    #[test]
    fn cmdline_carries_the_console_and_the_init_parameters() {
        assert_eq!(
            cmdline(40, 128),
            "console=ttyS0 edd=off quiet panic=-1 mv.dirty_rate=40 mv.working_set=128"
        );
        // The init reads exactly these keys.
        assert!(INIT.contains("mv.dirty_rate=*") && INIT.contains("mv.working_set=*"));
    }

    #[test]
    fn dirtied_reports_sum_the_inits_lines() {
        let console = "mv: dirtying 40 MiB/s over 64 MiB\n\
                       mv: dirtied 40 MiB in 1.0s, 40 MiB in all\n\
                       [    9.1] some kernel line\n\
                       mv: dirtied 31 MiB in 1.1s, 71 MiB in all\n\
                       mv: dirtied 4";
        let (mib, seconds) = dirtied_reports(console);
        assert_eq!(mib, 71);
        assert!((seconds - 2.1).abs() < 1e-9);
        // The init prints exactly that shape.
        assert!(INIT.contains("echo \"mv: dirtied $((done - reported)) MiB in $((d / 100)).$((d % 100 / 10))s, $done MiB in all\""));
    }

    #[test]
    fn static_elf_detection() {
        let dir = std::env::temp_dir().join(format!("mv-elf-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        fs::write(&script, b"#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&script));
        // /bin/sh of the build machine is dynamically linked.
        if let Ok(target) = fs::canonicalize("/bin/sh") {
            if fs::read(&target).is_ok_and(|b| b.starts_with(b"\x7fELF")) {
                assert!(!is_static_elf(&target));
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
