//! [`DynamoStateStore`]: object records and run counters in one DynamoDB table
//! (schema: `docs/STATE.md`).
//!
//! The table has a string partition key `pk` and sort key `sk`:
//!
//! * an object: `pk = obj#<len(bucket)>:<bucket>/<key>`, `sk = obj` — status,
//!   lease holder and expiry, the recorded upload, attempts, timestamps;
//! * a finished part of its upload: same `pk`, `sk = part#00001`;
//! * a run: `pk = run#<id>`, `sk = run` — counters and timestamps;
//! * the latest run: `pk = runs`, `sk = latest`.
//!
//! A global secondary index `by_run` (`run`, `status`) lists the objects of
//! a run by status. Claims are UpdateItem calls whose condition is "nobody
//! holds a live lease, or I do"; every later write is conditional on
//! `worker = me`; a part is recorded by a transaction of that condition and
//! the part's item. Counters are added with `ADD`, so concurrent workers
//! never lose an update.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use super::{
    Claim, ClaimFor, ObjectRecord, Outcome, RecordKey, RunCounters, RunRecord, RunTally, StateError, StateStore,
    Status, UploadRecord,
};
use crate::aws::{failure, SdkFailure};
use crate::retry::retry;

/// Tries of a batch call whose items come back unprocessed (throttled).
const UNPROCESSED_TRIES: u32 = 10;
use crate::now_millis;
use crate::store::PartInfo;

type Item = HashMap<String, AttributeValue>;

/// How long a part item outlives its last write (DynamoDB TTL, `expires_at`,
/// seconds since the epoch).
const PART_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The name of the index of objects by run and status.
pub const RUN_INDEX: &str = "by_run";

/// The DynamoDB state store.
#[derive(Debug, Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn obj_pk(key: &RecordKey) -> String {
    format!("obj#{}:{}/{}", key.bucket.len(), key.bucket, key.key)
}

fn run_pk(run: &str) -> String {
    format!("run#{run}")
}

fn item_key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

/// Expression attribute names for every `#name` in the expressions: each
/// stands for the attribute `name`, so reserved words (`key`, `status`,
/// `size`) need no care.
fn names(exprs: &[&str]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for e in exprs {
        let mut rest = *e;
        while let Some(i) = rest.find('#') {
            let tail = &rest[i + 1..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.insert(format!("#{}", &tail[..end]), tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    out
}

fn to_record(item: &Item) -> Option<ObjectRecord> {
    let src_etag = get_s(item, "src_etag");
    let upload = get_s(item, "upload_id").map(|upload_id| UploadRecord {
        upload_id,
        part_size: get_n(item, "part_size").unwrap_or(0) as u64,
        src_etag: src_etag.clone(),
        src_size: get_n(item, "src_size").unwrap_or(0) as u64,
    });
    Some(ObjectRecord {
        key: RecordKey {
            bucket: get_s(item, "bucket")?,
            key: get_s(item, "key")?,
        },
        status: get_s(item, "status")
            .and_then(|v| Status::parse(&v))
            .unwrap_or(Status::InProgress),
        run: get_s(item, "run"),
        upload,
        src_etag,
        parts: Vec::new(),
        attempts: get_n(item, "attempts").unwrap_or(0) as u32,
        worker: get_s(item, "worker"),
        lease_etag: get_s(item, "lease_etag"),
        event_seq: get_s(item, "event_seq"),
        lease_until: get_n(item, "lease_until"),
        dest_etag: get_s(item, "dest_etag"),
        checksum: get_s(item, "checksum"),
        dest_version: get_s(item, "dest_version"),
        last_error: get_s(item, "last_error"),
        updated_at: get_n(item, "updated_at").unwrap_or(0),
    })
}

fn is_part(item: &Item) -> bool {
    get_s(item, "sk").is_some_and(|sk| sk.starts_with("part#"))
}

/// The part items among an object's items that belong to `upload_id`, ascending.
fn parts_of(items: &[Item], upload_id: &str) -> Vec<PartInfo> {
    let mut parts: Vec<PartInfo> = items
        .iter()
        .filter(|i| is_part(i) && get_s(i, "upload_id").as_deref() == Some(upload_id))
        .filter_map(|i| {
            Some(PartInfo {
                number: get_n(i, "number")? as u32,
                etag: get_s(i, "etag")?,
                size: get_n(i, "size")? as u64,
            })
        })
        .collect();
    parts.sort_by_key(|p| p.number);
    parts
}

fn to_run(id: &str, item: &Item) -> RunRecord {
    let mut counters = RunCounters::default();
    for (name, _) in RunCounters::default().fields() {
        counters.set(name, get_n(item, name).unwrap_or(0).max(0) as u64);
    }
    RunRecord {
        id: id.to_string(),
        counters,
        started_at: get_n(item, "started_at").unwrap_or(0),
        listed_at: get_n(item, "listed_at"),
    }
}

/// The longest error text kept in a record.
const MAX_ERROR: usize = 2000;

fn clip(e: &str) -> String {
    if e.len() <= MAX_ERROR {
        return e.to_string();
    }
    let mut end = MAX_ERROR;
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &e[..end])
}

impl DynamoStateStore {
    /// A store in `table`, with the shared SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, table: &str) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_string(),
        }
    }

    /// A query of the run's records with one status, on the `by_run` index.
    fn by_run(&self, run: &str, status: Status) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let cond = "#run = :r AND #status = :s";
        self.client
            .query()
            .table_name(&self.table)
            .index_name(RUN_INDEX)
            .key_condition_expression(cond)
            .set_expression_attribute_names(Some(names(&[cond])))
            .expression_attribute_values(":r", s(run))
            .expression_attribute_values(":s", s(status.as_str()))
    }

    fn describe(&self) -> String {
        format!("DynamoDB table {}", self.table)
    }

    fn err(&self, operation: &str, f: SdkFailure) -> StateError {
        StateError::Service {
            store: self.describe(),
            operation: operation.to_string(),
            message: f.to_string(),
        }
    }

    fn lost(&self, key: &RecordKey, holder: Option<String>) -> StateError {
        StateError::LeaseLost {
            bucket: key.bucket.clone(),
            key: key.key.clone(),
            holder: holder.unwrap_or_else(|| "nobody".into()),
        }
    }

    /// Creates the table and its index when missing (on-demand billing). For
    /// development against local servers; production tables come from `infra/`.
    pub async fn create_table(sdk: &aws_config::SdkConfig, table: &str) -> Result<(), StateError> {
        let client = Client::new(sdk);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .expect("name and type are set")
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(RUN_INDEX)
            .key_schema(key("run", KeyType::Hash))
            .key_schema(key("status", KeyType::Range))
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .expect("index fields are set");
        let r = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .attribute_definitions(attr("run"))
            .attribute_definitions(attr("status"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .global_secondary_indexes(index)
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if failure(&e).code.contains("ResourceInUse") => Ok(()),
            Err(e) => Err(StateError::Service {
                store: format!("DynamoDB table {table}"),
                operation: "CreateTable".into(),
                message: failure(&e).to_string(),
            }),
        }
    }

    /// An UpdateItem on an object's record, conditional on `worker` holding its
    /// lease; returns the item as it was.
    async fn owned(
        &self,
        key: &RecordKey,
        worker: &str,
        update: &str,
        mut values: Item,
    ) -> Result<Option<Item>, StateError> {
        values.insert(":me".into(), s(worker));
        let cond = "#worker = :me";
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(obj_pk(key), "obj")))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names(&[update, cond])))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(out) => Ok(out.attributes),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Err(self.lost(key, c.item().and_then(|i| get_s(i, "worker"))))
                }
                _ => Err(self.err("UpdateItem", failure(&e))),
            },
        }
    }

    /// Every item of an object (record and parts), strongly consistent.
    async fn object_items(&self, key: &RecordKey) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .set_expression_attribute_names(Some(names(&["#pk"])))
                .expression_attribute_values(":pk", s(obj_pk(key)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.err("Query", failure(&e)))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Sends a batch until the service has processed all of it: `send` takes
    /// what is left and answers what is still unprocessed (with its count).
    /// Leftovers are sent again with backoff ([`crate::retry`]), at most
    /// [`UNPROCESSED_TRIES`] times in all.
    async fn until_processed<T, F, Fut>(&self, operation: &str, first: T, send: F) -> Result<(), StateError>
    where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = Result<Option<(usize, T)>, StateError>>,
    {
        let left = std::sync::Mutex::new(Some(first));
        let take = || left.lock().unwrap_or_else(|e| e.into_inner()).take();
        let unprocessed = |e: &StateError| matches!(e, StateError::Unprocessed { .. });
        retry(UNPROCESSED_TRIES, unprocessed, || {
            let sent = take().map(&send);
            let left = &left;
            async move {
                let Some(sent) = sent else { return Ok(()) };
                let Some((n, rest)) = sent.await? else {
                    return Ok(());
                };
                *left.lock().unwrap_or_else(|e| e.into_inner()) = Some(rest);
                Err(StateError::Unprocessed {
                    store: self.describe(),
                    operation: operation.to_string(),
                    left: n,
                })
            }
        })
        .await
    }

    /// The parts recorded for `upload_id`, ascending.
    async fn parts(&self, key: &RecordKey, upload_id: &str) -> Result<Vec<PartInfo>, StateError> {
        Ok(parts_of(&self.object_items(key).await?, upload_id))
    }

    /// Deletes the part items of an object.
    async fn delete_parts(&self, key: &RecordKey) -> Result<(), StateError> {
        let parts: Vec<Item> = self.object_items(key).await?.into_iter().filter(is_part).collect();
        for chunk in parts.chunks(25) {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    let k = item_key(get_s(i, "pk").unwrap_or_default(), &get_s(i, "sk").unwrap_or_default());
                    WriteRequest::builder()
                        .delete_request(DeleteRequest::builder().set_key(Some(k)).build().expect("key is set"))
                        .build()
                })
                .collect();
            self.until_processed("BatchWriteItem", requests, |batch: Vec<WriteRequest>| async move {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, batch)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchWriteItem", failure(&e)))?;
                let left = out.unprocessed_items.and_then(|mut u| u.remove(&self.table));
                Ok(left.filter(|l| !l.is_empty()).map(|l| (l.len(), l)))
            })
            .await?;
        }
        Ok(())
    }
}

/// The SET clauses and REMOVE names that record an outcome's ETags, event
/// sequence and checksum; a missing source ETag is removed when
/// `forget_src`, kept otherwise.
fn outcome_fields(
    o: &Outcome,
    forget_src: bool,
    set: &mut Vec<&'static str>,
    remove: &mut Vec<&'static str>,
    values: &mut HashMap<String, AttributeValue>,
) {
    let fields: [(&Option<String>, &'static str, &'static str, &'static str, bool); 4] = [
        (&o.src_etag, "#src_etag = :se", ":se", "#src_etag", forget_src),
        (&o.dest_etag, "#dest_etag = :de", ":de", "#dest_etag", true),
        (&o.checksum, "#checksum = :sum", ":sum", "#checksum", true),
        (&o.dest_version, "#dest_version = :dv", ":dv", "#dest_version", true),
    ];
    for (value, clause, name, attr, forget) in fields {
        match value {
            Some(v) => {
                set.push(clause);
                values.insert(name.into(), s(v));
            }
            None if forget => remove.push(attr),
            None => {}
        }
    }
    if let Some(q) = &o.event_seq {
        set.push("#event_seq = :seq");
        values.insert(":seq".into(), s(q));
    }
}

#[async_trait]
impl StateStore for DynamoStateStore {
    /// A claim (an UpdateItem conditional on the lease), recording `done` in
    /// the same write when given.
    async fn claim_with(&self, key: &RecordKey, to: ClaimFor<'_>, done: Option<&Outcome>) -> Result<Claim, StateError> {
        let (worker, run, src_etag, lease) = (to.worker, to.run, to.src_etag, to.lease);
        let now = now_millis();
        let mut update = "SET #bucket = :b, #key = :k, #run = :run, #worker = :w, #lease_until = :until, \
                          #updated_at = :now, #created_at = if_not_exists(#created_at, :now)"
            .to_string();
        let mut remove: Vec<&str> = Vec::new();
        let mut values = HashMap::from([
            (":b".to_string(), s(&key.bucket)),
            (":k".to_string(), s(&key.key)),
            (":run".to_string(), s(run)),
            (":w".to_string(), s(worker)),
            (":until".to_string(), n(now + lease.as_millis() as i64)),
            (":now".to_string(), n(now)),
            (":zero".to_string(), n(0)),
        ]);
        match src_etag {
            Some(e) => {
                update.push_str(", #lease_etag = :le");
                values.insert(":le".into(), s(e));
            }
            None => remove.push("#lease_etag"),
        }
        match done {
            None => {
                update.push_str(", #status = if_not_exists(#status, :ip), #attempts = if_not_exists(#attempts, :zero)");
                values.insert(":ip".into(), s(Status::InProgress.as_str()));
            }
            Some(o) => {
                update.push_str(", #status = :st, #attempts = if_not_exists(#attempts, :zero)");
                values.insert(":st".into(), s(o.status.as_str()));
                let mut set = Vec::new();
                outcome_fields(o, true, &mut set, &mut remove, &mut values);
                for clause in set {
                    update.push_str(", ");
                    update.push_str(clause);
                }
                remove.extend(["#last_error", "#upload_id", "#part_size"]);
            }
        }
        if !remove.is_empty() {
            update.push_str(" REMOVE ");
            update.push_str(&remove.join(", "));
        }
        let cond = "attribute_not_exists(#worker) OR #worker = :w OR #lease_until < :now";
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(obj_pk(key), "obj")))
            .update_expression(&update)
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names(&[&update, cond])))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match r {
            Ok(out) => out.attributes,
            Err(e) => {
                return match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        let item = match c.item() {
                            Some(i) => Some(i.clone()),
                            None => self
                                .object_items(key)
                                .await?
                                .into_iter()
                                .find(|i| get_s(i, "sk").as_deref() == Some("obj")),
                        };
                        let item = item.unwrap_or_default();
                        Ok(Claim::Busy {
                            worker: get_s(&item, "worker").unwrap_or_default(),
                            until: get_n(&item, "lease_until").unwrap_or(0),
                            etag: get_s(&item, "lease_etag"),
                        })
                    }
                    _ => Err(self.err("UpdateItem (claim)", failure(&e))),
                };
            }
        };
        let mut rec = match old.as_ref().filter(|i| !i.is_empty()).and_then(to_record) {
            Some(r) => r,
            None => ObjectRecord::new(key.clone(), run, now),
        };
        if let Some(up) = &rec.upload {
            if done.is_some() {
                self.delete_parts(key).await?;
            } else {
                rec.parts = self.parts(key, &up.upload_id).await?;
            }
        }
        Ok(Claim::Acquired(Box::new(rec)))
    }

    async fn renew(&self, key: &RecordKey, worker: &str, lease: Duration) -> Result<(), StateError> {
        let until = now_millis() + lease.as_millis() as i64;
        self.owned(
            key,
            worker,
            "SET #lease_until = :until",
            HashMap::from([(":until".to_string(), n(until))]),
        )
        .await
        .map(|_| ())
    }

    async fn begin_upload(&self, key: &RecordKey, worker: &str, upload: &UploadRecord) -> Result<(), StateError> {
        let mut values = HashMap::from([
            (":ip".to_string(), s(Status::InProgress.as_str())),
            (":u".to_string(), s(&upload.upload_id)),
            (":ps".to_string(), n(upload.part_size)),
            (":ss".to_string(), n(upload.src_size)),
            (":now".to_string(), n(now_millis())),
        ]);
        let mut update =
            "SET #status = :ip, #upload_id = :u, #part_size = :ps, #src_size = :ss, #updated_at = :now".to_string();
        match &upload.src_etag {
            Some(e) => {
                update.push_str(", #src_etag = :se");
                values.insert(":se".into(), s(e));
            }
            None => update.push_str(" REMOVE #src_etag"),
        }
        self.owned(key, worker, &update, values).await.map(|_| ())
    }

    async fn part_done(&self, key: &RecordKey, worker: &str, upload: &str, part: &PartInfo) -> Result<(), StateError> {
        let pk = obj_pk(key);
        let cond = "#worker = :me";
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(item_key(pk.clone(), "obj")))
            .condition_expression(cond)
            .set_expression_attribute_names(Some(names(&[cond])))
            .expression_attribute_values(":me", s(worker))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("check fields are set");
        let mut item = item_key(pk, &format!("part#{:05}", part.number));
        item.insert("upload_id".into(), s(upload));
        item.insert("number".into(), n(part.number));
        item.insert("etag".into(), s(&part.etag));
        item.insert("size".into(), n(part.size));
        // Parts of an upload that is never finished expire (the table's TTL
        // attribute); a finished or aborted upload deletes its parts at once.
        item.insert("expires_at".into(), n(now_millis() / 1000 + PART_TTL.as_secs() as i64));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .expect("put fields are set");
        let r = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons()
                        .first()
                        .and_then(|r| r.code())
                        .is_some_and(|code| code.contains("ConditionalCheckFailed")) =>
                {
                    let holder = c
                        .cancellation_reasons()
                        .first()
                        .and_then(|r| r.item())
                        .and_then(|i| get_s(i, "worker"));
                    Err(self.lost(key, holder))
                }
                _ => Err(self.err("TransactWriteItems (part)", failure(&e))),
            },
        }
    }

    async fn clear_upload(&self, key: &RecordKey, worker: &str) -> Result<(), StateError> {
        self.owned(
            key,
            worker,
            "SET #updated_at = :now REMOVE #upload_id, #part_size",
            HashMap::from([(":now".to_string(), n(now_millis()))]),
        )
        .await?;
        self.delete_parts(key).await
    }

    async fn finish(&self, key: &RecordKey, worker: &str, outcome: &Outcome) -> Result<(), StateError> {
        let mut set = vec!["#status = :st", "#updated_at = :now"];
        let mut remove = vec!["#worker", "#lease_until", "#lease_etag"];
        let mut values = HashMap::from([
            (":st".to_string(), s(outcome.status.as_str())),
            (":now".to_string(), n(now_millis())),
        ]);
        outcome_fields(outcome, false, &mut set, &mut remove, &mut values);
        match &outcome.error {
            Some(e) => {
                set.push("#last_error = :err");
                values.insert(":err".into(), s(clip(e)));
            }
            None => remove.push("#last_error"),
        }
        // Every status recorded here is final (a given-up job's upload is
        // aborted by the caller): the upload is forgotten and the attempts
        // start again from zero, should the job be sent again.
        set.push("#attempts = :zero");
        values.insert(":zero".into(), n(0));
        remove.extend(["#upload_id", "#part_size"]);
        let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let old = self.owned(key, worker, &update, values).await?;
        if old.as_ref().is_some_and(|o| o.contains_key("upload_id")) {
            self.delete_parts(key).await?;
        }
        Ok(())
    }

    async fn release(&self, key: &RecordKey, worker: &str, error: Option<&str>) -> Result<(), StateError> {
        let mut values = HashMap::from([
            (":now".to_string(), n(now_millis())),
            (":zero".to_string(), n(0)),
            (":inc".to_string(), n(error.is_some() as u8)),
        ]);
        let mut update = "SET #updated_at = :now, #attempts = if_not_exists(#attempts, :zero) + :inc".to_string();
        if let Some(e) = error {
            update.push_str(", #status = :ip, #last_error = :err");
            values.insert(":ip".into(), s(Status::InProgress.as_str()));
            values.insert(":err".into(), s(clip(e)));
        }
        update.push_str(" REMOVE #worker, #lease_until, #lease_etag");
        self.owned(key, worker, &update, values).await.map(|_| ())
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<ObjectRecord>, StateError> {
        let items = self.object_items(key).await?;
        let Some(mut rec) = items
            .iter()
            .find(|i| get_s(i, "sk").as_deref() == Some("obj"))
            .and_then(to_record)
        else {
            return Ok(None);
        };
        if let Some(up) = &rec.upload {
            rec.parts = parts_of(&items, &up.upload_id);
        }
        Ok(Some(rec))
    }

    async fn get_many(&self, keys: &[RecordKey]) -> Result<Vec<Option<ObjectRecord>>, StateError> {
        let found: std::sync::Mutex<HashMap<String, ObjectRecord>> = Default::default();
        let mut unique: Vec<String> = keys.iter().map(obj_pk).collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|pk| item_key(pk.clone(), "obj")).collect()))
                .consistent_read(true)
                .build()
                .expect("keys are set");
            let found = &found;
            self.until_processed("BatchGetItem", request, |req: KeysAndAttributes| async move {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchGetItem", failure(&e)))?;
                let items = out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default();
                let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
                for item in items {
                    if let (Some(pk), Some(rec)) = (get_s(&item, "pk"), to_record(&item)) {
                        found.insert(pk, rec);
                    }
                }
                let left = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table));
                Ok(left.filter(|k| !k.keys().is_empty()).map(|k| (k.keys().len(), k)))
            })
            .await?;
        }
        let found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(keys.iter().map(|k| found.get(&obj_pk(k)).cloned()).collect())
    }

    async fn run_start(&self, run: &str) -> Result<(), StateError> {
        self.run_add(run, RunCounters::default()).await?;
        let mut item = item_key("runs".into(), "latest");
        item.insert("id".into(), s(run));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.err("PutItem (latest run)", failure(&e)))?;
        Ok(())
    }

    async fn run_listed(&self, run: &str) -> Result<(), StateError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(run_pk(run), "run")))
            .update_expression("SET #listed_at = :now")
            .set_expression_attribute_names(Some(names(&["#listed_at"])))
            .expression_attribute_values(":now", n(now_millis()))
            .send()
            .await
            .map_err(|e| self.err("UpdateItem (run)", failure(&e)))?;
        Ok(())
    }

    async fn run_add(&self, run: &str, delta: RunCounters) -> Result<(), StateError> {
        let mut values = HashMap::from([(":id".to_string(), s(run)), (":now".to_string(), n(now_millis()))]);
        let mut adds = Vec::new();
        for (name, v) in delta.fields() {
            if v > 0 {
                adds.push(format!("#{name} :{name}"));
                values.insert(format!(":{name}"), n(v));
            }
        }
        let mut update = "SET #id = :id, #started_at = if_not_exists(#started_at, :now)".to_string();
        if !adds.is_empty() {
            update.push_str(" ADD ");
            update.push_str(&adds.join(", "));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item_key(run_pk(run), "run")))
            .update_expression(&update)
            .set_expression_attribute_names(Some(names(&[&update])))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| self.err("UpdateItem (run counters)", failure(&e)))?;
        Ok(())
    }

    async fn run_get(&self, run: &str) -> Result<Option<RunRecord>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(run_pk(run), "run")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem (run)", failure(&e)))?;
        Ok(out.item.map(|i| to_run(run, &i)))
    }

    async fn latest_run(&self) -> Result<Option<String>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key("runs".into(), "latest")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem (latest run)", failure(&e)))?;
        Ok(out.item.and_then(|i| get_s(&i, "id")))
    }

    async fn run_objects(&self, run: &str, status: Status, limit: usize) -> Result<Vec<ObjectRecord>, StateError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .by_run(run, status)
                .limit((limit - out.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.err("Query (by_run)", failure(&e)))?;
            out.extend(page.items().iter().filter_map(to_record));
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    async fn run_tally(&self, run: &str) -> Result<RunTally, StateError> {
        let mut t = RunTally::default();
        for status in RunTally::STATUSES {
            let mut count = 0u64;
            let mut start = None;
            loop {
                let page = self
                    .by_run(run, status)
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| self.err("Query (by_run, count)", failure(&e)))?;
                count += page.count().max(0) as u64;
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
            t.set(status, count);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_are_collected() {
        let m = names(&["SET #a = :x, #b_c = if_not_exists(#a, :y)", "#d = :z"]);
        assert_eq!(m.len(), 3);
        assert_eq!(m["#b_c"], "b_c");
        assert_eq!(m["#d"], "d");
    }

    #[test]
    fn object_keys_do_not_collide() {
        let a = RecordKey {
            bucket: "a#b".into(),
            key: "c".into(),
        };
        let b = RecordKey {
            bucket: "a".into(),
            key: "b#c".into(),
        };
        assert_ne!(obj_pk(&a), obj_pk(&b));
        assert_eq!(obj_pk(&b), "obj#1:a/b#c");
    }
}

#[path = "dynamo_bandwidth.rs"]
mod bandwidth;
