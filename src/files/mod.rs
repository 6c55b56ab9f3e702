//! Uploaded files: a storage trait with two stores (a local directory, or an S3-compatible object
//! store), image checks (the bytes must be JPEG, PNG, GIF or WebP; width and height are read),
//! thumbnails, and the URLs a message may name ([`urls`]). Below the IM layer: what uploads a
//! user may make, and who may read a file, is `crate::im`'s (`im/uploads.rs`); the HTTP side is
//! `crate::api`'s.

pub mod decode;
pub mod disposition;
pub mod object;
pub mod urls;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// Where file bytes are kept, by key.
pub trait FileStore: Send + Sync {
    /// Stores `bytes` under `key`, all or nothing.
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, std::io::Result<()>>;
    /// The bytes under `key`, or `None`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Option<Bytes>>>;
}

/// Files in a local directory, one file per key.
pub struct LocalFileStore {
    dir: PathBuf,
}

impl LocalFileStore {
    /// A store under `dir` (created on the first write).
    pub fn new(dir: PathBuf) -> LocalFileStore {
        LocalFileStore { dir }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        valid_key(key).then(|| self.dir.join(key))
    }
}

/// Keys are generated hex ids with an optional suffix; anything else never names a stored file,
/// so a key can neither leave the directory nor the store's prefix.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !key.starts_with('.')
}

/// The store `config` names: the local directory, or an S3-compatible bucket.
///
/// # Errors
///
/// A one-line reason when the S3 settings cannot make a client.
pub fn open_store(config: &crate::config::FilesConfig) -> Result<Arc<dyn FileStore>, String> {
    match config.store {
        crate::config::FileStoreKind::Local => {
            Ok(Arc::new(LocalFileStore::new(config.dir.clone())))
        }
        crate::config::FileStoreKind::S3 => Ok(Arc::new(object::ObjectFileStore::s3(config)?)),
    }
}

impl FileStore for LocalFileStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let path = self
                .path(key)
                .ok_or_else(|| std::io::Error::other("invalid file key"))?;
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || crate::private_fs::create_dir(&dir))
                .await
                .map_err(std::io::Error::other)??;
            // Written aside and renamed, so a crash never leaves a partial file under the key.
            let partial = self
                .dir
                .join(format!(".{key}.{:08x}.part", rand::random::<u32>()));
            if let Err(error) = crate::private_fs::write_new(&partial, &bytes).await {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(error);
            }
            tokio::fs::rename(&partial, &path).await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Option<Bytes>>> {
        Box::pin(async move {
            let Some(path) = self.path(key) else {
                return Ok(None);
            };
            match tokio::fs::read(&path).await {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error),
            }
        })
    }
}

/// The settings of uploads.
#[derive(Clone, Debug)]
pub struct FilesSettings {
    /// Largest image.
    pub image_max_bytes: u64,
    /// Largest other file.
    pub file_max_bytes: u64,
    /// Where media attachments may point besides this broker's files.
    pub external_url_prefixes: urls::ExternalPrefixes,
    /// Largest image, in pixels.
    pub image_max_pixels: u64,
    /// Uploads per user.
    pub upload_rate: crate::config::Rate,
    /// Bytes one user may upload within 24 hours.
    pub quota_bytes_per_day: u64,
}

/// What the bytes of an image are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// `image/jpeg`, `image/png`, `image/gif` or `image/webp`.
    pub mime: &'static str,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// A JPEG thumbnail at most 256 pixels on its longer side.
    pub thumbnail: Option<Vec<u8>>,
}

/// The image type of the bytes, from their signature.
pub fn sniff_image(bytes: &[u8]) -> Option<(&'static str, image::ImageFormat)> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(("image/jpeg", image::ImageFormat::Jpeg))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(("image/png", image::ImageFormat::Png))
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(("image/gif", image::ImageFormat::Gif))
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(("image/webp", image::ImageFormat::WebP))
    } else {
        None
    }
}

/// `files.image_max_pixels` as shipped; [`inspect_image`] applies it.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;
/// What decoding may allocate per allowed pixel: 8-bit RGBA. Deeper images (16-bit PNG) of
/// the largest allowed size are refused rather than decoded.
const BYTES_PER_PIXEL: u64 = 4;
const THUMBNAIL_SIDE: u32 = 256;

/// Why uploaded bytes are not taken as an image.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefusal {
    /// Not one of the image types taken.
    #[error("the bytes are not a JPEG, PNG, GIF or WebP image")]
    NotAnImage,
    /// The header declares more pixels than allowed; nothing was decoded.
    #[error("the image is {width} x {height} pixels, more than the {max} allowed")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `files.image_max_pixels`.
        max: u64,
    },
    /// The bytes do not decode within the limits.
    #[error("unreadable {mime} image: {reason}")]
    Unreadable {
        /// The type the bytes claim.
        mime: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Checks that `bytes` are a JPEG, PNG, GIF or WebP image of at most [`DEFAULT_MAX_PIXELS`],
/// reads its size and makes a thumbnail. CPU-bound: run it on a blocking thread.
///
/// # Errors
///
/// A message fit for `INVALID_ARGUMENT` when the bytes are not a readable image of those types.
pub fn inspect_image(bytes: &[u8]) -> Result<ImageInfo, String> {
    inspect_image_within(bytes, DEFAULT_MAX_PIXELS).map_err(|e| e.to_string())
}

/// As [`inspect_image`], with at most `max_pixels` pixels. The size is read from the image's
/// header and checked before anything is decoded, so that a small file declaring a huge bitmap
/// costs nothing; decoding is then bounded to 4 bytes per allowed pixel.
///
/// # Errors
///
/// [`ImageRefusal`].
pub fn inspect_image_within(bytes: &[u8], max_pixels: u64) -> Result<ImageInfo, ImageRefusal> {
    let (mime, format) = sniff_image(bytes).ok_or(ImageRefusal::NotAnImage)?;
    let unreadable = |reason: String| ImageRefusal::Unreadable { mime, reason };
    let max_alloc = max_pixels.saturating_mul(BYTES_PER_PIXEL);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| unreadable(e.to_string()))?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageRefusal::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    if image::ImageDecoder::total_bytes(&decoder) > max_alloc {
        return Err(unreadable(format!(
            "decoding needs more than {max_alloc} bytes"
        )));
    }
    let decoded =
        image::DynamicImage::from_decoder(decoder).map_err(|e| unreadable(e.to_string()))?;
    let small = decoded
        .thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        .into_rgb8();
    drop(decoded);
    let mut thumbnail = Vec::new();
    let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail, 80)
        .encode_image(&small)
        .is_ok();
    Ok(ImageInfo {
        mime,
        width,
        height,
        thumbnail: encoded.then_some(thumbnail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_is_measured_and_thumbnailed() {
        let picture = image::RgbImage::from_pixel(640, 320, image::Rgb([200, 10, 10]));
        let mut png = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let info = inspect_image(&png).unwrap();
        assert_eq!(
            (info.mime, info.width, info.height),
            ("image/png", 640, 320)
        );
        let thumbnail = info.thumbnail.unwrap();
        assert_eq!(sniff_image(&thumbnail).unwrap().0, "image/jpeg");
    }

    #[test]
    fn other_bytes_are_refused_without_panicking() {
        assert!(inspect_image(b"not an image at all").is_err());
        assert!(inspect_image(b"\x89PNG\r\n\x1a\ntruncated").is_err());
        assert!(inspect_image(&[]).is_err());
    }

    #[test]
    fn an_image_over_the_pixel_limit_is_refused_from_its_header() {
        let picture = image::RgbImage::from_pixel(200, 100, image::Rgb([1, 2, 3]));
        let mut png = Vec::new();
        picture
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(
            inspect_image_within(&png, 19_999).unwrap_err(),
            ImageRefusal::TooManyPixels {
                width: 200,
                height: 100,
                max: 19_999
            }
        );
        assert!(inspect_image_within(&png, 20_000).is_ok());
    }

    #[test]
    fn keys_cannot_leave_the_directory() {
        let store = LocalFileStore::new(PathBuf::from("/tmp/x"));
        assert!(store.path("../etc/passwd").is_none());
        assert!(store.path(".hidden").is_none());
        assert!(store.path("abc123.thumb").is_some());
    }
}
