//! The ObjectStore conformance suite over the real protocol: `S3Store`
//! against radosgw (strict: checks Content-MD5) and against moto.

use ferry_core::store::conformance;
use ferry_core::store::{S3Credentials, S3Store, S3StoreConfig};
use ferry_tests::*;

async fn store(server: &Server, bucket: &str) -> S3Store {
    store_signing(server, bucket, false).await
}

async fn store_signing(server: &Server, bucket: &str, sign_payload: bool) -> S3Store {
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    S3Store::new(S3StoreConfig {
        bucket: bucket.into(),
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        path_style: true,
        credentials: S3Credentials::Static {
            access_key_id: server.access_key.clone(),
            secret_access_key: server.secret_key.clone(),
            session_token: None,
        },
        requester_pays: false,
        sign_payload,
        crc64nvme: false,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_on_radosgw() {
    let rgw = rgw();
    let bucket = rgw.bucket("conf").await;
    let s = store(&rgw, &bucket).await;
    conformance::put_get_list_delete(&s, "p/").await;
    conformance::bad_digest_rejected(&s, "d/").await;
    conformance::multipart_resume(&s, "m/").await;
    conformance::unhashed_writes(&s, "u/").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_on_radosgw_with_signed_payloads() {
    let rgw = rgw();
    let bucket = rgw.bucket("conf-signed").await;
    let s = store_signing(&rgw, &bucket, true).await;
    conformance::put_get_list_delete(&s, "p/").await;
    conformance::bad_digest_rejected(&s, "d/").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_on_moto() {
    // moto accepts any Content-MD5 (docs/COMPATIBILITY.md), so digest rejection is tested on radosgw only.
    let moto = moto();
    let bucket = moto.bucket("conf").await;
    let s = store(&moto, &bucket).await;
    conformance::put_get_list_delete(&s, "p/").await;
    conformance::multipart_resume(&s, "m/").await;
    conformance::unhashed_writes(&s, "u/").await;
}
