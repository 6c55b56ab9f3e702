//! Files as objects of an S3-compatible store (AWS S3, MinIO, Ceph RGW, Cloudflare R2...),
//! through the `object_store` crate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::{FileStore, valid_key};
use crate::config::FilesConfig;

/// Retries of one request; each store call is also bounded by `files.s3_timeout_ms` as a whole.
const MAX_RETRIES: usize = 3;

/// Keys under a prefix of an object store. A put is one request, so an object is either whole or
/// absent: a failed or refused upload leaves nothing behind.
pub struct ObjectFileStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    timeout: Duration,
    /// The endpoint, whose password (if it has one) errors must not show.
    endpoint: String,
}

impl ObjectFileStore {
    /// The S3 store the `[files]` section describes. Credentials the section leaves unset come
    /// from the usual `AWS_*` variables (or the instance's role).
    ///
    /// # Errors
    ///
    /// A one-line reason when the settings cannot make a client.
    pub fn s3(config: &FilesConfig) -> Result<ObjectFileStore, String> {
        let timeout = Duration::from_millis(config.s3_timeout_ms);
        let mut builder = AmazonS3Builder::from_env()
            .with_region(&config.s3_region)
            .with_allow_http(config.s3_allow_http)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout.min(Duration::from_secs(5)))
                    .with_allow_http(config.s3_allow_http),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: MAX_RETRIES,
                retry_timeout: timeout,
            });
        if let Some(bucket) = &config.s3_bucket {
            builder = builder.with_bucket_name(bucket);
        }
        if let Some(endpoint) = &config.s3_endpoint {
            // Self-hosted stores rarely have a wildcard DNS name per bucket.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &config.s3_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let endpoint = config.s3_endpoint.clone().unwrap_or_default();
        let store = builder
            .build()
            .map_err(|e| crate::redact::redact_secrets(&e.to_string(), &endpoint))?;
        let mut store = ObjectFileStore::new(Arc::new(store), &config.s3_prefix, timeout);
        store.endpoint = endpoint;
        Ok(store)
    }

    /// Keys of `store` under `prefix` (a folder; empty for the root), each call bounded by
    /// `timeout`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, timeout: Duration) -> ObjectFileStore {
        let prefix = prefix.trim_matches('/');
        ObjectFileStore {
            store,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            timeout,
            endpoint: String::new(),
        }
    }

    fn location(&self, key: &str) -> Option<Path> {
        valid_key(key).then(|| Path::from(format!("{}{key}", self.prefix)))
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = object_store::Result<T>>,
    ) -> std::io::Result<T> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.map_err(|error| {
                let error = std::io::Error::from(error);
                std::io::Error::new(
                    error.kind(),
                    crate::redact::redact_secrets(&error.to_string(), &self.endpoint),
                )
            }),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the object store did not answer in time",
            )),
        }
    }
}

impl FileStore for ObjectFileStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let location = self
                .location(key)
                .ok_or_else(|| std::io::Error::other("invalid file key"))?;
            self.bounded(self.store.put(&location, PutPayload::from(bytes)))
                .await
                .map(drop)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, std::io::Result<Option<Bytes>>> {
        Box::pin(async move {
            let Some(location) = self.location(key) else {
                return Ok(None);
            };
            let read = async {
                match self.store.get(&location).await {
                    Ok(found) => found.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(error) => Err(error),
                }
            };
            self.bounded(read).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn keys_live_under_the_prefix_and_missing_ones_are_none() {
        let memory = Arc::new(InMemory::new());
        let store = ObjectFileStore::new(memory.clone(), "/chat/files/", Duration::from_secs(5));
        store
            .put("abc.thumb", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let raw = memory
            .get(&Path::from("chat/files/abc.thumb"))
            .await
            .unwrap();
        assert_eq!(raw.bytes().await.unwrap(), Bytes::from_static(b"x"));
        assert_eq!(
            store.get("abc.thumb").await.unwrap(),
            Some(Bytes::from_static(b"x"))
        );
        assert_eq!(store.get("absent").await.unwrap(), None);
        assert_eq!(store.get("../abc.thumb").await.unwrap(), None);
        assert!(store.put("../x", Bytes::new()).await.is_err());
    }
}
