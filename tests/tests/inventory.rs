//! S3 Inventory as the source's listing, end to end: a report written by
//! the test (CSV, gzip-compressed, in two unsorted files; and Parquet) in
//! a report bucket on radosgw; the finder copies exactly the report's keys
//! under the source prefix, and never lists the source bucket.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use ferry_tests::proxy::Proxy;
use ferry_tests::*;

const MIB: usize = 1024 * 1024;

struct Listed {
    key: String,
    size: usize,
    etag: String,
}

/// The source: objects, some in the report, one not.
async fn source(rgw: &Server, bucket: &str) -> (BTreeMap<String, Vec<u8>>, Vec<Listed>) {
    let files = BTreeMap::from([
        ("data/a.txt".to_string(), data(1000, 1)),
        ("data/b c+d é.txt".to_string(), data(2000, 2)),
        ("data/big.bin".to_string(), data(7 * MIB, 3)),
        ("data/not-in-report.txt".to_string(), data(300, 4)),
        ("other/x.txt".to_string(), data(400, 5)),
    ]);
    rgw.put_all(bucket, &files).await;
    let mut report = Vec::new();
    for (key, body) in &files {
        if key.contains("not-in-report") {
            continue;
        }
        let etag = hex::encode(ferry_core::etag::md5(body));
        report.push(Listed {
            key: key.clone(),
            size: body.len(),
            etag,
        });
    }
    report.reverse(); // No order is promised.
    (files, report)
}

fn url_encoded(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'/' => (b as char).to_string(),
            b' ' => "+".into(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn csv_gz(src: &str, rows: &[&Listed]) -> Vec<u8> {
    let mut text = String::new();
    for r in rows {
        text.push_str(&format!(
            "\"{src}\",\"{}\",\"{}\",\"2026-11-30T08:00:00.000Z\",\"{}\"\n",
            url_encoded(&r.key),
            r.size,
            r.etag
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// Writes one column of a row group.
type WriteColumn<'a> = Box<dyn Fn(&mut parquet::file::writer::SerializedColumnWriter<'_>) + 'a>;

fn parquet_file(src: &str, rows: &[&Listed]) -> Vec<u8> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message inventory { required binary bucket (UTF8); required binary key (UTF8); required int64 size; \
         required int64 last_modified_date (TIMESTAMP_MILLIS); required binary e_tag (UTF8); }",
    )
    .unwrap();
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, Arc::new(schema), Arc::new(props)).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let text = |f: &dyn Fn(&Listed) -> String| rows.iter().map(|r| ByteArray::from(f(r).as_str())).collect::<Vec<_>>();
    let columns: Vec<WriteColumn<'_>> = vec![
        Box::new(|c| {
            c.typed::<ByteArrayType>()
                .write_batch(&text(&|_| src.to_string()), None, None)
                .unwrap();
        }),
        Box::new(|c| {
            c.typed::<ByteArrayType>()
                .write_batch(&text(&|r| r.key.clone()), None, None)
                .unwrap();
        }),
        Box::new(|c| {
            let sizes: Vec<i64> = rows.iter().map(|r| r.size as i64).collect();
            c.typed::<Int64Type>().write_batch(&sizes, None, None).unwrap();
        }),
        Box::new(|c| {
            c.typed::<Int64Type>()
                .write_batch(&vec![1_796_025_600_000; rows.len()], None, None)
                .unwrap();
        }),
        Box::new(|c| {
            c.typed::<ByteArrayType>()
                .write_batch(&text(&|r| r.etag.clone()), None, None)
                .unwrap();
        }),
    ];
    for write in columns {
        let mut col = rg.next_column().unwrap().expect("a column");
        write(&mut col);
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
    out
}

async fn copy_with_report(format: &str) {
    let rgw = rgw();
    let (src, inv) = (rgw.bucket("inv-src").await, rgw.bucket("inv-report").await);
    let (files, report) = source(&rgw, &src).await;
    let rows: Vec<&Listed> = report.iter().collect();
    let base = "src/daily/2026-11-30T01-00Z";
    let (data_files, schema) = match format {
        "CSV" => {
            let (one, two) = rows.split_at(2);
            (
                vec![
                    (format!("{base}/data/1.csv.gz"), csv_gz(&src, one)),
                    (format!("{base}/data/2.csv.gz"), csv_gz(&src, two)),
                ],
                "Bucket, Key, Size, LastModifiedDate, ETag",
            )
        }
        _ => (vec![(format!("{base}/data/1.parquet"), parquet_file(&src, &rows))], ""),
    };
    let listed: Vec<String> = data_files
        .iter()
        .map(|(k, _)| format!("{{\"key\":\"{k}\",\"size\":0}}"))
        .collect();
    let manifest = format!(
        "{{\"sourceBucket\":\"{src}\",\"destinationBucket\":\"arn:aws:s3:::{inv}\",\"version\":\"2016-11-30\",\"fileFormat\":\"{format}\",\"fileSchema\":\"{schema}\",\"files\":[{}]}}",
        listed.join(",")
    );
    let mut objects: BTreeMap<String, Vec<u8>> = data_files.into_iter().collect();
    objects.insert(format!("{base}/manifest.json"), manifest.into_bytes());
    rgw.put_all(&inv, &objects).await;

    let proxy = Proxy::start(&rgw.endpoint).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let args = vec![
        format!("s3://{src}/data/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--src-endpoint".into(),
        proxy.endpoint.clone(),
        "--src-path-style".into(),
        "--source-inventory".into(),
        format!("s3://{inv}/{base}/manifest.json"),
        "--multipart-threshold".into(),
        "5MiB".into(),
    ];
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(out.status.success(), "{format}: {}", output_text(&out));
    let want: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter(|(k, _)| k.starts_with("data/") && !k.contains("not-in-report"))
        .map(|(k, v)| (k.trim_start_matches("data/").to_string(), v.clone()))
        .collect();
    assert_same(&format!("the {format} report's keys"), &want, &read_tree(&dst));
    let listings: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.operation() == "ListObjects")
        .collect();
    assert!(listings.is_empty(), "{format}: the source is not listed: {listings:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_inventory_report_replaces_the_source_listing() {
    copy_with_report("CSV").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parquet_inventory_report_replaces_the_source_listing() {
    copy_with_report("Parquet").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_of_another_bucket_is_refused() {
    let rgw = rgw();
    let (src, inv) = (rgw.bucket("inv-src2").await, rgw.bucket("inv-report2").await);
    let manifest =
        "{\"sourceBucket\":\"someone-else\",\"fileFormat\":\"CSV\",\"fileSchema\":\"Bucket, Key\",\"files\":[]}";
    rgw.put_all(
        &inv,
        &BTreeMap::from([("m/manifest.json".to_string(), manifest.as_bytes().to_vec())]),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut args = vec![
        format!("s3://{src}/"),
        work.path().join("dst").display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--source-inventory".into(),
        format!("s3://{inv}/m/manifest.json"),
    ];
    args.extend(rgw.flags("src"));
    let out = run(finder(&args, &rgw.envs("src")));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("the report is of bucket someone-else"),
        "{}",
        output_text(&out)
    );
}
