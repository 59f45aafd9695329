//! Out of file descriptors, no listener may spin the poller (issue 14 item 15).
//!
//! A file of its own: the test lowers this process's open-file limit and uses up
//! every descriptor, which no other test may share.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::test_config;

/// The `stat` file of this process's thread named `name`, kept open: reading it
/// again later needs no new file descriptor.
fn thread_stat(name: &str) -> File {
    // The thread names itself once it runs: look for a while.
    for _ in 0..100 {
        for task in std::fs::read_dir("/proc/self/task").expect("/proc") {
            let path = task.expect("a task").path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                return File::open(path.join("stat")).expect("stat");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no thread named {name}");
}

/// CPU time (user + system, in clock ticks) from a thread's `stat` file.
fn cpu_ticks(stat: &mut File) -> u64 {
    let mut text = String::new();
    stat.seek(SeekFrom::Start(0)).unwrap();
    stat.read_to_string(&mut text).expect("stat");
    let fields: Vec<&str> = text.rsplit_once(')').expect("comm").1.split(' ').collect();
    // After "pid (comm)": state is fields[1]; utime and stime are fields 14, 15.
    fields[12].parse::<u64>().unwrap() + fields[13].parse::<u64>().unwrap()
}

/// A TCP socket made now and connected later (when no descriptor is left to make one).
struct Unconnected(std::os::fd::OwnedFd);

impl Unconnected {
    fn new() -> Unconnected {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain socket call; the descriptor is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Unconnected(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    fn connect(self, addr: std::net::SocketAddr) -> TcpStream {
        use std::os::fd::AsRawFd;
        let std::net::SocketAddr::V4(v4) = addr else {
            panic!("an IPv4 address")
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `sin` is a valid sockaddr_in of the length given.
        let rc = unsafe {
            libc::connect(
                self.0.as_raw_fd(),
                std::ptr::from_ref(&sin).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from(self.0)
    }
}

#[test]
fn out_of_file_descriptors_no_listener_spins_the_poller() {
    let mut config = test_config();
    config.max_conns = 8;
    config.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = parlor::Server::bind(config).expect("binds");
    let (addr, metrics) = (server.local_addr(), server.metrics_addr().unwrap());
    let _handle = server.spawn();
    let mut poller = thread_stat("parlor-poller");
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("the open-file limit");
    rlimit::Resource::NOFILE
        .set(soft.min(256), hard)
        .expect("a lower limit");
    // Use up every descriptor, then connect to both listeners (with sockets made
    // before): the server has none left to accept with.
    let (chat, scrape) = (Unconnected::new(), Unconnected::new());
    let mut hoard = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hoard.push(file);
        assert!(hoard.len() < 1024, "the limit did not hold");
    }
    let mut chat = chat.connect(addr);
    let mut scrape = scrape.connect(metrics);
    let before = cpu_ticks(&mut poller);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ticks = cpu_ticks(&mut poller) - before;
    let elapsed = started.elapsed();
    drop(hoard);
    rlimit::Resource::NOFILE
        .set(soft, hard)
        .expect("the limit back");
    // A spinning poller burns a whole core: about 100 ticks a second.
    assert!(
        ticks < 40,
        "the poller used {ticks} ticks of CPU in {elapsed:?} while out of descriptors"
    );
    // Once descriptors are free again, both waiting clients are served.
    chat.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    chat.write_all(b"{\"op\":\"ping\"}\n").unwrap();
    let mut pong = [0u8; 64];
    let n = chat.read(&mut pong).expect("a pong");
    assert!(String::from_utf8_lossy(&pong[..n]).contains("pong"));
    scrape
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = scrape.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}
