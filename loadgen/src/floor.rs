//! The `floor` scenario: the kernel's own cost of a fan-out over loopback TCP, with no broker.
//!
//! Writer threads write one small message to each of N sockets per publication, as a broker
//! writes one MESSAGE frame per subscriber, and reader threads on `mio` poll the other ends, as
//! loadgen's subscribers do. What this measures (latency from the first write of a publication
//! to each arrival, CPU per delivery) is what the machine allows before any broker code runs,
//! so broker latency figures can be read against it.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::stats::{Latencies, Percentiles, now_ns};

/// How the floor run is shaped.
#[derive(Clone, Debug)]
pub struct Floor {
    /// Connected socket pairs.
    pub sockets: usize,
    /// Threads writing to the accepted ends.
    pub writers: usize,
    /// Threads reading the connecting ends.
    pub readers: usize,
    /// Publications per second.
    pub rate: f64,
    /// How long to publish.
    pub duration: Duration,
    /// Bytes per message, at least the 8 of the timestamp.
    pub payload: usize,
}

/// What a floor run measured.
#[derive(Debug, serde::Serialize)]
pub struct FloorReport {
    /// Always `floor`.
    pub scenario: &'static str,
    /// Free text naming the machine or the run.
    pub label: String,
    /// Connected socket pairs.
    pub sockets: usize,
    /// Writer threads.
    pub writers: usize,
    /// Reader threads.
    pub readers: usize,
    /// Publications per second.
    pub rate: f64,
    /// Seconds of publishing asked for (`--duration`).
    pub duration_seconds: f64,
    /// Bytes per message.
    pub payload: usize,
    /// Publications made.
    pub publications: u64,
    /// Messages that should have arrived (publications × sockets).
    pub expected: u64,
    /// Messages that arrived.
    pub received: u64,
    /// `expected - received`.
    pub lost: u64,
    /// From the start of a writer's publication to the arrival of each copy.
    pub latency: Percentiles,
    /// CPU time of writers and readers per message received, in microseconds.
    pub cpu_us_per_delivery: f64,
    /// The writers' share of it.
    pub write_us_per_delivery: f64,
    /// The readers' share of it.
    pub read_us_per_delivery: f64,
    /// Cores busy during the run, this process and the rest of the machine.
    pub cpu: Option<crate::cpu::Usage>,
    /// Socket failures.
    pub errors: u64,
    /// The first few of them.
    pub error_samples: Vec<String>,
}

impl FloorReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "floor [{}] sockets={} writers={} readers={} rate={}/s payload={}B received={}/{} \
             lost={} p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms cpu/delivery={:.2}us \
             (write={:.2}us read={:.2}us) errors={}{}",
            self.label,
            self.sockets,
            self.writers,
            self.readers,
            self.rate,
            self.payload,
            self.received,
            self.expected,
            self.lost,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
            self.cpu_us_per_delivery,
            self.write_us_per_delivery,
            self.read_us_per_delivery,
            self.errors,
            crate::cpu::suffix(self.cpu.as_ref()),
        )
    }
}

/// After the last publication, how long to wait without progress for the last copies.
const DRAIN: Duration = Duration::from_secs(2);
/// How often an idle reader looks at the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);
const READ_BUFFER: usize = 16 * 1024;
/// Time for every thread to start (and readers to register their sockets) before the first
/// publication, so that none of that shows as latency.
const LEAD: Duration = Duration::from_millis(100);

/// Runs the floor scenario; blocking, on threads of its own.
///
/// # Errors
///
/// When the arguments are out of range or the sockets cannot be opened (e.g. too few file
/// descriptors: each pair takes two).
pub fn run(floor: &Floor) -> anyhow::Result<FloorReport> {
    if !(floor.rate > 0.0 && floor.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    if floor.payload < 8 {
        bail!("--payload must be at least 8 bytes (the timestamp)");
    }
    if floor.sockets == 0 {
        bail!("--sockets must be at least 1");
    }
    let (servers, clients) = open_pairs(floor.sockets)?;
    let servers = chunks(servers, floor.writers);
    let clients = chunks(clients, floor.readers);
    let (writers, readers) = (servers.len(), clients.len());

    let latencies = Arc::new(Latencies::new());
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(crate::Errors::default());

    let mut reading = Vec::new();
    for (index, mine) in clients.into_iter().enumerate() {
        let latencies = latencies.clone();
        let received = received.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        let payload = floor.payload;
        reading.push(
            std::thread::Builder::new()
                .name(format!("floor-read-{index}"))
                .spawn(move || {
                    read_loop(index, mine, payload, &latencies, &received, &stop).unwrap_or_else(
                        |error| {
                            errors.add(format!("reader {index}: {error:#}"));
                            0
                        },
                    )
                })?,
        );
    }

    let publications = (floor.rate * floor.duration.as_secs_f64()).ceil() as u64;
    let start_ns = now_ns() + u64::try_from(LEAD.as_nanos()).unwrap_or(0);
    let cpu_start = crate::cpu::Sample::take(None);
    let mut writing = Vec::new();
    for (index, mine) in servers.into_iter().enumerate() {
        let errors = errors.clone();
        let (rate, payload) = (floor.rate, floor.payload);
        writing.push(
            std::thread::Builder::new()
                .name(format!("floor-write-{index}"))
                .spawn(move || {
                    write_loop(mine, start_ns, publications, rate, payload).unwrap_or_else(
                        |error| {
                            errors.add(format!("writer {index}: {error:#}"));
                            0
                        },
                    )
                })?,
        );
    }
    let write_ns: u64 = writing.into_iter().map(|h| h.join().unwrap_or(0)).sum();

    let expected = publications * floor.sockets as u64;
    let mut last = received.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while last < expected && last_progress.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(10));
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_progress = Instant::now();
        }
    }
    let cpu = crate::cpu::since(cpu_start, None);
    stop.store(true, Ordering::Relaxed);
    let read_ns: u64 = reading.into_iter().map(|h| h.join().unwrap_or(0)).sum();

    let received = received.load(Ordering::Relaxed);
    let per_delivery = |ns: u64| ns as f64 / 1000.0 / received.max(1) as f64;
    Ok(FloorReport {
        scenario: "floor",
        label: String::new(),
        sockets: floor.sockets,
        writers,
        readers,
        rate: floor.rate,
        duration_seconds: floor.duration.as_secs_f64(),
        payload: floor.payload,
        publications,
        expected,
        received,
        lost: expected.saturating_sub(received),
        latency: Percentiles::of(&latencies.merged()),
        cpu_us_per_delivery: per_delivery(write_ns + read_ns),
        write_us_per_delivery: per_delivery(write_ns),
        read_us_per_delivery: per_delivery(read_ns),
        cpu,
        errors: errors.count(),
        error_samples: errors.samples(),
    })
}

/// `count` connected pairs over loopback: (accepted ends, connecting ends).
fn open_pairs(count: usize) -> anyhow::Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr()?;
    let mut servers = Vec::with_capacity(count);
    let mut clients = Vec::with_capacity(count);
    for number in 0..count {
        let client = TcpStream::connect(addr)
            .with_context(|| format!("connecting socket {number} (ulimit -n?)"))?;
        let (server, _) = listener
            .accept()
            .with_context(|| format!("accepting socket {number} (ulimit -n?)"))?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        clients.push(client);
        servers.push(server);
    }
    Ok((servers, clients))
}

/// Splits `items` into `parts` runs of nearly equal length.
fn chunks<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let per = items.len().div_ceil(parts.max(1)).max(1);
    let mut out: Vec<Vec<T>> = Vec::with_capacity(parts);
    for item in items {
        match out.last_mut() {
            Some(last) if last.len() < per => last.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

/// Makes `publications` publications at `rate`, the first at `start_ns`; returns this thread's
/// CPU time in ns while doing so.
fn write_loop(
    mut sockets: Vec<TcpStream>,
    start_ns: u64,
    publications: u64,
    rate: f64,
    payload: usize,
) -> anyhow::Result<u64> {
    let mut message = vec![b'x'; payload];
    let mut cpu_start = None;
    for seq in 0..publications {
        let due = start_ns + (seq as f64 * 1e9 / rate) as u64;
        let now = now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        // Read after a sleep, when the kernel has just brought the figure up to date.
        cpu_start.get_or_insert_with(crate::cpu::thread_ns);
        // Stamped once per publication, as a publisher stamps a message once: a socket's
        // latency includes the writes to the sockets before it, as behind a broker.
        message[..8].copy_from_slice(&now_ns().to_le_bytes());
        for socket in &mut sockets {
            socket.write_all(&message).context("write")?;
        }
    }
    std::thread::sleep(Duration::from_millis(1));
    let cpu_end = crate::cpu::thread_ns();
    Ok(match (cpu_start.flatten(), cpu_end) {
        (Some(start), Some(end)) => end.saturating_sub(start),
        _ => 0,
    })
}

/// Reads `sockets` until `stop`, recording the latency of every message; returns this thread's
/// CPU time in ns while doing so.
fn read_loop(
    index: usize,
    sockets: Vec<TcpStream>,
    payload: usize,
    latencies: &Latencies,
    received: &AtomicU64,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    let mut poll = Poll::new()?;
    let mut sockets = sockets
        .into_iter()
        .map(|socket| {
            socket.set_nonblocking(true)?;
            Ok(MioStream::from_std(socket))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for (token, socket) in sockets.iter_mut().enumerate() {
        poll.registry()
            .register(socket, Token(token), Interest::READABLE)?;
    }
    let mut splitters: Vec<Splitter> = (0..sockets.len()).map(|_| Splitter::new(payload)).collect();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUFFER];
    std::thread::sleep(Duration::from_millis(1));
    let cpu_start = crate::cpu::thread_ns();
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(POLL_TIMEOUT)) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.into()),
        }
        let mut count = 0u64;
        for event in &events {
            let token = event.token().0;
            let socket = &mut sockets[token];
            loop {
                match socket.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let now = now_ns();
                        splitters[token].feed(&buf[..n], |message| {
                            let sent = u64::from_le_bytes(
                                message[..8].try_into().expect("a message holds 8 bytes"),
                            );
                            latencies.record(index, now.saturating_sub(sent));
                            count += 1;
                        });
                        // A short read drained the socket, and edge-triggered readiness fires
                        // again on the next arrival: skip the read that would say WouldBlock,
                        // as tokio does.
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => return Err(error).context("read"),
                }
            }
        }
        if count > 0 {
            received.fetch_add(count, Ordering::Relaxed);
        }
    }
    Ok(match (cpu_start, crate::cpu::thread_ns()) {
        (Some(start), Some(end)) => end.saturating_sub(start),
        _ => 0,
    })
}

/// Cuts a byte stream into messages of one size, keeping a message split across reads until
/// its end arrives.
struct Splitter {
    size: usize,
    partial: Vec<u8>,
}

impl Splitter {
    fn new(size: usize) -> Splitter {
        Splitter {
            size,
            partial: Vec::new(),
        }
    }

    /// Hands every message completed by `data` to `each`, in order.
    fn feed(&mut self, mut data: &[u8], mut each: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let take = (self.size - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < self.size {
                return;
            }
            each(&self.partial);
            self.partial.clear();
        }
        let mut messages = data.chunks_exact(self.size);
        for message in &mut messages {
            each(message);
        }
        self.partial.extend_from_slice(messages.remainder());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(splitter: &mut Splitter, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        splitter.feed(data, |m| out.push(m.to_vec()));
        out
    }

    #[test]
    fn whole_messages_come_out_as_they_are() {
        let mut s = Splitter::new(3);
        assert_eq!(split(&mut s, b"abcdef"), [b"abc".to_vec(), b"def".to_vec()]);
        assert!(s.partial.is_empty());
    }

    #[test]
    fn a_message_split_across_reads_is_joined() {
        let mut s = Splitter::new(4);
        assert_eq!(split(&mut s, b"abcdef"), [b"abcd".to_vec()]);
        assert_eq!(split(&mut s, b"g"), Vec::<Vec<u8>>::new());
        assert_eq!(
            split(&mut s, b"hijkl"),
            [b"efgh".to_vec(), b"ijkl".to_vec()]
        );
        assert!(s.partial.is_empty());
    }

    #[test]
    fn chunks_cover_everything_in_order() {
        let parts = chunks((0..10).collect(), 3);
        assert_eq!(parts, [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert_eq!(chunks((0..2).collect(), 3), [vec![0], vec![1]]);
    }
}
