//! Where uploaded images are decoded: on blocking threads, at most as many at once as the
//! machine has cores. Decoding is the one step of an upload whose memory grows with what the
//! client declares rather than with what it sent; with the pixel limit of
//! [`super::inspect_image_within`], this bounds what concurrent uploads can make the broker
//! hold at once (cores × `files.image_max_pixels` × 4 bytes) instead of letting it grow with
//! the number of uploads in flight.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::{ImageInfo, ImageRefusal, inspect_image_within};

struct DecodePool {
    slots: Semaphore,
    size: usize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// One pool for the process: its bound is the machine's, whatever the number of brokers in it.
static POOL: LazyLock<DecodePool> = LazyLock::new(|| {
    let size = std::thread::available_parallelism().map_or(1, usize::from);
    DecodePool {
        slots: Semaphore::new(size),
        size,
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    }
});

/// Counts a decode while it runs.
struct Running;

impl Running {
    fn enter() -> Running {
        let now = POOL.running.fetch_add(1, Ordering::SeqCst) + 1;
        POOL.peak.fetch_max(now, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        POOL.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why an image could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are refused as an image.
    #[error(transparent)]
    Refused(#[from] ImageRefusal),
    /// The decoding thread failed (a panic in a decoder).
    #[error("image decoding failed: {0}")]
    Failed(String),
}

/// [`inspect_image_within`] on the pool: waits for a free slot, then decodes on a blocking
/// thread. The slot is held until the decode ends, even if the caller stops waiting (its client
/// went away), so the bound holds.
///
/// # Errors
///
/// [`DecodeError`].
pub async fn inspect(bytes: Bytes, max_pixels: u64) -> Result<ImageInfo, DecodeError> {
    let permit = POOL
        .slots
        .acquire()
        .await
        .map_err(|e| DecodeError::Failed(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _running = Running::enter();
        inspect_image_within(&bytes, max_pixels)
    })
    .await
    .map_err(|e| DecodeError::Failed(e.to_string()))?
    .map_err(DecodeError::Refused)
}

/// How many images may be decoded at once: the machine's cores.
pub fn slots() -> usize {
    POOL.size
}

/// The most images decoded at once since the process started.
pub fn peak() -> usize {
    POOL.peak.load(Ordering::SeqCst)
}
