//! Where the sandbox's Parquet lies: a directory in `pdp dev`; in a cluster, whose pods share no
//! directory, a bucket of any S3-compatible store (the cloud's object storage, MinIO, Ceph RGW).

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

use crate::engine::SandboxError;

/// An S3-compatible bucket, as the deployment names it.
#[derive(Debug, Clone, Default)]
pub struct S3 {
    /// `s3://<bucket>` or `s3://<bucket>/<prefix>`.
    pub url: String,
    /// The S3 API's address (`https://s3.example.gov.cn`); unset for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Unset to take the credentials from the environment (`AWS_*`, web identity in a pod).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

fn misconfigured(message: String) -> SandboxError {
    SandboxError::Engine(format!("the sandbox store is misconfigured: {message}"))
}

/// A directory, made if missing.
pub fn directory(dir: &Path) -> Result<Arc<dyn ObjectStore>, SandboxError> {
    std::fs::create_dir_all(dir).map_err(|e| misconfigured(format!("{}: {e}", dir.display())))?;
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| misconfigured(format!("{}: {e}", dir.display())))?;
    Ok(Arc::new(store))
}

/// The bucket `s3.url` names, under its prefix if it has one. Nothing is contacted here: a
/// wrong address or credential shows at the first load or query.
pub fn s3(s3: &S3) -> Result<Arc<dyn ObjectStore>, SandboxError> {
    let rest = s3.url.strip_prefix("s3://").ok_or_else(|| {
        misconfigured(format!(
            "sandbox.store_url `{}` is no s3://<bucket>[/<prefix>] URL",
            s3.url
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(misconfigured(format!(
            "sandbox.store_url `{}` names no bucket",
            s3.url
        )));
    }
    // From the environment first, so that a pod's web identity or AWS_* variables serve when the
    // configuration names no key.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&s3.region);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret);
    }
    let store = builder.build().map_err(|e| misconfigured(e.to_string()))?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_url_names_its_bucket() {
        for url in ["http://bucket", "s3://", "s3:///prefix", "bucket/prefix"] {
            let err = s3(&S3 {
                url: url.into(),
                region: "us-east-1".into(),
                ..S3::default()
            })
            .expect_err(url);
            assert!(err.to_string().contains("sandbox.store_url"), "{err}");
        }
        let ok = S3 {
            url: "s3://pdp-data/harbin".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
        };
        assert!(s3(&ok).is_ok());
    }
}
