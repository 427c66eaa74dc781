//! The conformance suite every [`ObjectStore`] backend passes (behind the
//! `testing` feature). Each function takes a store and a unique key prefix and
//! panics with a message on the first broken contract.

use crate::etag::ETag;
use bytes::Bytes;
use futures::TryStreamExt;

use super::{GetOptions, ObjectStore, PutOptions, StoreError};
use crate::etag;

/// Deterministic pseudo-random bytes.
/// An upload's shape.
pub fn shape(size: u64, part_size: u64) -> super::UploadShape {
    super::UploadShape { size, part_size }
}

pub fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn put(store: &dyn ObjectStore, key: &str, body: Bytes) {
    let md5 = etag::md5(&body);
    store
        .put(key, body, md5, &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
}

/// Keys every backend stores, in S3 byte order once `prefix` is prepended.
pub const PORTABLE_KEYS: &[&str] = &["a b+c%20d.txt", "a-b", "a/b", "a0", "quote\"s'\\back", "ünï/cödé 😀"];

/// PUT, HEAD, GET (whole, ranged, pinned), list order and start-after, delete.
pub async fn put_get_list_delete(store: &dyn ObjectStore, prefix: &str) {
    for (i, k) in PORTABLE_KEYS.iter().enumerate() {
        put(store, &format!("{prefix}{k}"), data(100 + i, i as u64)).await;
    }
    put(store, &format!("{prefix}empty"), Bytes::new()).await;
    let listed: Vec<String> = store
        .list(prefix, None)
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    let mut expect: Vec<String> = PORTABLE_KEYS.iter().map(|k| format!("{prefix}{k}")).collect();
    expect.push(format!("{prefix}empty"));
    expect.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(listed, expect, "{}: listing must be in S3 byte order", store.describe());

    let after: Vec<String> = store
        .list(prefix, Some(&format!("{prefix}a-b")))
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list after");
    assert_eq!(
        after,
        expect[expect.iter().position(|k| k.ends_with("a-b")).unwrap() + 1..].to_vec()
    );

    let key = format!("{prefix}a/b");
    let meta = store.head(&key).await.expect("head").expect("present");
    assert_eq!(meta.size, 102);
    let whole = store.get(&key, &GetOptions::default()).await.expect("get");
    assert_eq!(whole.body, data(102, 2));
    let ranged = store
        .get(
            &key,
            &GetOptions {
                range: Some(10..20),
                ..Default::default()
            },
        )
        .await
        .expect("ranged get");
    assert_eq!(ranged.body, data(102, 2).slice(10..20));
    assert_eq!(ranged.meta.size, 102, "a ranged read reports the whole size");
    let pinned = GetOptions {
        if_match: meta.etag.clone(),
        ..Default::default()
    };
    store.get(&key, &pinned).await.expect("get pinned to the current ETag");

    put(store, &key, data(50, 99)).await;
    match store.get(&key, &pinned).await {
        Err(StoreError::PreconditionFailed { .. }) => {}
        other => panic!(
            "{}: a read pinned to an old ETag must fail, got {other:?}",
            store.describe()
        ),
    }
    assert_eq!(
        store.head(&format!("{prefix}missing")).await.expect("head missing"),
        None
    );
    match store.get(&format!("{prefix}missing"), &GetOptions::default()).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("get of a missing key must be NotFound, got {other:?}"),
    }
    assert_eq!(
        store
            .get(&format!("{prefix}empty"), &GetOptions::default())
            .await
            .expect("empty")
            .body
            .len(),
        0
    );
    for k in &expect {
        store.delete(k).await.expect("delete");
    }
    store
        .delete(&format!("{prefix}missing"))
        .await
        .expect("deleting a missing key is not an error");
    let left: Vec<String> = store
        .list(prefix, None)
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .expect("list");
    assert!(left.is_empty(), "left after delete: {left:?}");
}

/// A wrong Content-MD5 is refused and nothing is written.
pub async fn bad_digest_rejected(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}digest");
    let body = data(1000, 5);
    let wrong = etag::md5(b"something else");
    match store.put(&key, body.clone(), wrong, &PutOptions::default()).await {
        Err(StoreError::BadDigest { .. }) => {}
        other => panic!(
            "{}: a wrong Content-MD5 must be BadDigest, got {other:?}",
            store.describe()
        ),
    }
    assert_eq!(store.head(&key).await.unwrap(), None, "nothing may be written");
    let id = store
        .create_multipart(&key, &PutOptions::default(), shape(1000, 1000))
        .await
        .unwrap();
    match store.upload_part(&key, &id, 1, body, wrong).await {
        Err(StoreError::BadDigest { .. }) => {}
        other => panic!(
            "{}: a part with a wrong Content-MD5 must be BadDigest, got {other:?}",
            store.describe()
        ),
    }
    store.abort_multipart(&key, &id).await.unwrap();
}

/// The multipart protocol: parts survive until completion, can be listed
/// (resume), re-uploaded, and complete into the right bytes and ETag;
/// nothing is visible before completion; abort frees the upload.
pub async fn multipart_resume(store: &dyn ObjectStore, prefix: &str) {
    const PART: usize = 5 * 1024 * 1024;
    let key = format!("{prefix}multi");
    let parts = [data(PART, 1), data(PART, 2), data(1234, 3)];
    let id = store
        .create_multipart(&key, &PutOptions::default(), shape(2 * PART as u64 + 1234, PART as u64))
        .await
        .expect("create");
    let mut infos = Vec::new();
    for (i, p) in parts.iter().take(2).enumerate() {
        let n = i as u32 + 1;
        let tag = store
            .upload_part(&key, &id, n, p.clone(), etag::md5(p))
            .await
            .expect("upload part");
        assert!(ETag(&tag).same(&ETag::of_md5(&etag::md5(p))), "part ETag is its MD5");
        infos.push(super::PartInfo {
            number: n,
            etag: tag,
            size: p.len() as u64,
        });
    }
    assert_eq!(store.head(&key).await.unwrap(), None, "no object before completion");
    let uploads = store.list_uploads(prefix).await.expect("list uploads");
    assert!(
        uploads.iter().any(|u| u.upload_id == id && u.key == key),
        "upload listed: {uploads:?}"
    );
    let listed = store.list_parts(&key, &id).await.expect("list parts");
    assert_eq!(listed.len(), 2);
    for (a, b) in listed.iter().zip(&infos) {
        assert_eq!(a.number, b.number);
        assert!(ETag(&a.etag).same(&b.etag));
        assert_eq!(a.size, b.size);
    }
    let p3 = &parts[2];
    let tag = store
        .upload_part(&key, &id, 3, p3.clone(), etag::md5(p3))
        .await
        .expect("part 3");
    infos.push(super::PartInfo {
        number: 3,
        etag: tag,
        size: p3.len() as u64,
    });
    store.complete_multipart(&key, &id, &infos).await.expect("complete");
    let got = store.get(&key, &GetOptions::default()).await.expect("get");
    let mut whole = Vec::new();
    for p in &parts {
        whole.extend_from_slice(p);
    }
    assert!(got.body == whole, "completed bytes differ");
    let head = store.head(&key).await.unwrap().unwrap();
    assert_eq!(head.size, whole.len() as u64);
    if store.etags_are_md5() {
        let expect = ETag::of_parts(parts.iter().map(|p| etag::md5(p)).collect::<Vec<_>>().iter());
        assert!(
            ETag(head.etag.as_deref().unwrap_or("")).same(&expect),
            "multipart ETag {:?} != {expect}",
            head.etag
        );
    }
    let id2 = store
        .create_multipart(&format!("{prefix}aborted"), &PutOptions::default(), shape(10, 10))
        .await
        .unwrap();
    store
        .upload_part(
            &format!("{prefix}aborted"),
            &id2,
            1,
            data(10, 1),
            etag::md5(&data(10, 1)),
        )
        .await
        .unwrap();
    store
        .abort_multipart(&format!("{prefix}aborted"), &id2)
        .await
        .expect("abort");
    store
        .abort_multipart(&format!("{prefix}aborted"), &id2)
        .await
        .expect("abort twice");
    match store.list_parts(&format!("{prefix}aborted"), &id2).await {
        Err(StoreError::NoSuchUpload { .. }) => {}
        other => panic!(
            "{}: list_parts after abort must be NoSuchUpload, got {other:?}",
            store.describe()
        ),
    }
    assert!(!store
        .list_uploads(prefix)
        .await
        .unwrap()
        .iter()
        .any(|u| u.upload_id == id2 || u.upload_id == id));
    store.delete(&key).await.unwrap();
}

/// Writes the caller did not hash: the ETags are the MD5 forms of the bytes,
/// which read back whole; completing from such parts gives the object.
pub async fn unhashed_writes(store: &dyn ObjectStore, prefix: &str) {
    let d = store.describe();
    let body = data(3000, 77);
    let key = format!("{prefix}unhashed");
    let tag = store
        .put_unhashed(&key, body.clone(), &PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{d}: put_unhashed: {e}"));
    assert!(
        ETag(&tag).same(&ETag::of_md5(&etag::md5(&body))),
        "{d}: put_unhashed ETag {tag}"
    );
    let got = store.get(&key, &GetOptions::default()).await.expect("get");
    assert_eq!(got.body, body, "{d}: put_unhashed bytes");

    let part = data(5 << 20, 78);
    let mkey = format!("{prefix}unhashed-mp");
    let id = store
        .create_multipart(&mkey, &PutOptions::default(), shape((5 << 20) + 10, 5 << 20))
        .await
        .expect("create");
    let t1 = store
        .upload_part_unhashed(&mkey, &id, 1, part.clone())
        .await
        .expect("part 1");
    assert!(ETag(&t1).same(&ETag::of_md5(&etag::md5(&part))), "{d}: part ETag {t1}");
    let tail = data(10, 79);
    let t2 = store
        .upload_part_unhashed(&mkey, &id, 2, tail.clone())
        .await
        .expect("part 2");
    let parts = vec![
        super::PartInfo {
            number: 1,
            etag: t1,
            size: part.len() as u64,
        },
        super::PartInfo {
            number: 2,
            etag: t2,
            size: tail.len() as u64,
        },
    ];
    store.complete_multipart(&mkey, &id, &parts).await.expect("complete");
    let got = store.get(&mkey, &GetOptions::default()).await.expect("get");
    assert_eq!(got.body.len(), part.len() + tail.len(), "{d}: assembled size");
    assert!(
        got.body.starts_with(&part) && got.body.ends_with(&tail),
        "{d}: assembled bytes"
    );
    store.delete(&key).await.expect("delete");
    store.delete(&mkey).await.expect("delete");
}
