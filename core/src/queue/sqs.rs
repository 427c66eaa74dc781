//! [`SqsQueue`]: the job queue on Amazon SQS (or any server speaking its API).
//!
//! * Sending: SendMessageBatch with up to 10 entries. A body over SQS's
//!   256 KiB limit is refused before sending, with the size in the error; an
//!   entry SQS refuses comes back as that entry's error, so the caller
//!   ([`super::JobQueueExt::send_all`]) retries it — nothing is dropped.
//! * Receiving: ReceiveMessage with long polling (up to 20 s), up to 10
//!   messages, the lease as the visibility timeout, and the
//!   `ApproximateReceiveCount` of each message.
//! * Leases: ChangeMessageVisibility. SQS refuses to keep a message hidden
//!   longer than 12 hours after it was received ([`SQS_MAX_HIDDEN`]); the
//!   worker stops extending before that, lets the message become visible,
//!   and the redelivery waits for the object's lease or resumes from the
//!   recorded parts.
//! * Acknowledging: DeleteMessage / DeleteMessageBatch. A failed job is given
//!   back with ChangeMessageVisibility (its delay).
//! * Dead letters: the worker decides, from the failed attempts the ledger
//!   counts, when a job is given up, and moves it to the dead-letter queue
//!   itself (SendMessage there with the error as the `ferry-error` attribute,
//!   then DeleteMessage). The queue's redrive policy (`maxReceiveCount`, read
//!   at start by [`SqsQueue::redrive`], with the dead-letter queue's URL
//!   derived from its ARN) is a backstop only: a message whose receives were
//!   spent by workers that died or stopped is requeued fresh before it gets
//!   there (see `ferry_worker::runner`). [`JobQueue::redrive_dead`] moves
//!   dead messages back.
//!
//! SQS accepts a stale receipt handle on delete (the message may or may not be
//! deleted); every job is idempotent, so a message that survives is found
//! done when it comes back.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use futures::stream::{self, StreamExt};
use tokio::sync::OnceCell;

use super::{JobQueue, Message, QueueError, QueueStats, SendFailure};
use crate::aws::failure;

/// The largest message body SQS accepts, bytes.
pub const SQS_MAX_BODY: usize = 256 * 1024;
/// How long SQS keeps a received message hidden at most, counted from the receive.
pub const SQS_MAX_HIDDEN: Duration = Duration::from_secs(12 * 3600);

/// The message attribute that carries the last error of a job the worker
/// dead-lettered itself.
pub const ERROR_ATTRIBUTE: &str = "ferry-error";

/// The message attribute a requeued copy carries: the id of the message it
/// continues, which stays its [`Message::id`].
pub const ORIGIN_ATTRIBUTE: &str = "ferry-origin";

/// A queue's dead-letter settings, from its redrive policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// URL of the dead-letter queue.
    pub dlq_url: String,
    /// Receives before SQS moves a message there.
    pub max_receives: u32,
}

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    redrive: std::sync::Arc<OnceCell<Option<Redrive>>>,
}

fn secs(d: Duration) -> i32 {
    d.as_secs().min(SQS_MAX_HIDDEN.as_secs()) as i32
}

impl SqsQueue {
    /// A queue by URL, with the shared SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, url: &str) -> Self {
        Self {
            client: Client::new(sdk),
            url: url.to_string(),
            redrive: Default::default(),
        }
    }

    /// Sends `body` to the queue at `url` with the string attribute `name` = `value`.
    async fn send_tagged(
        &self,
        url: &str,
        body: &str,
        name: &str,
        value: &str,
        operation: &str,
    ) -> Result<(), QueueError> {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("the data type is set");
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_attributes(name, attribute)
            .send()
            .await
            .map_err(|e| self.err(operation, failure(&e)))?;
        Ok(())
    }

    /// The queue URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn err(&self, operation: &str, f: crate::aws::SdkFailure) -> QueueError {
        QueueError::Service {
            queue: self.describe(),
            operation: operation.to_string(),
            message: f.to_string(),
        }
    }

    fn receipt_err(&self, operation: &str, receipt: &str, f: crate::aws::SdkFailure) -> QueueError {
        if f.code.contains("ReceiptHandleIsInvalid") || f.code.contains("MessageNotInflight") {
            QueueError::LeaseLost {
                queue: self.describe(),
                receipt: short(receipt),
            }
        } else {
            self.err(operation, f)
        }
    }

    /// The queue's redrive policy (read once): where dead messages go and after
    /// how many receives. `None` when the queue has none.
    pub async fn redrive(&self) -> Result<Option<Redrive>, QueueError> {
        self.redrive
            .get_or_try_init(|| async {
                let attrs = self
                    .client
                    .get_queue_attributes()
                    .queue_url(&self.url)
                    .attribute_names(QueueAttributeName::RedrivePolicy)
                    .send()
                    .await
                    .map_err(|e| self.err("GetQueueAttributes", failure(&e)))?;
                let Some(policy) = attrs
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                else {
                    return Ok(None);
                };
                let v: serde_json::Value = serde_json::from_str(policy).map_err(|e| QueueError::Service {
                    queue: self.describe(),
                    operation: "GetQueueAttributes".into(),
                    message: format!("the RedrivePolicy attribute is not JSON: {e}"),
                })?;
                let arn = v["deadLetterTargetArn"].as_str().unwrap_or_default();
                let max = match &v["maxReceiveCount"] {
                    serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
                    serde_json::Value::String(s) => s.parse().unwrap_or(0),
                    _ => 0,
                };
                let dlq_url = sibling_url(&self.url, arn).ok_or_else(|| QueueError::Service {
                    queue: self.describe(),
                    operation: "GetQueueAttributes".into(),
                    message: format!("the dead-letter queue ARN {arn:?} of the RedrivePolicy is not an SQS queue ARN"),
                })?;
                Ok(Some(Redrive {
                    dlq_url,
                    max_receives: max.clamp(1, u32::MAX as u64) as u32,
                }))
            })
            .await
            .cloned()
    }

    async fn count(&self, url: &str, names: &[QueueAttributeName]) -> Result<Vec<u64>, QueueError> {
        let mut req = self.client.get_queue_attributes().queue_url(url);
        for n in names {
            req = req.attribute_names(n.clone());
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.err("GetQueueAttributes", failure(&e)))?;
        let attrs = out.attributes().cloned().unwrap_or_default();
        Ok(names
            .iter()
            .map(|n| attrs.get(n).and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect())
    }

    /// Creates the queue and its dead-letter queue (`NAME-dlq`) when missing,
    /// with a redrive policy after `max_receives` receives, and returns the
    /// queue's URL. For development against local servers; production queues
    /// come from `infra/`.
    pub async fn create(sdk: &aws_config::SdkConfig, name: &str, max_receives: u32) -> Result<String, QueueError> {
        let client = Client::new(sdk);
        let e = |op: &str, f: crate::aws::SdkFailure| QueueError::Service {
            queue: format!("SQS queue {name}"),
            operation: op.to_string(),
            message: f.to_string(),
        };
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|x| e("CreateQueue (dead-letter queue)", failure(&x)))?;
        let dlq_url = dlq.queue_url().unwrap_or_default();
        let arn = client
            .get_queue_attributes()
            .queue_url(dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|x| e("GetQueueAttributes (dead-letter queue)", failure(&x)))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        let policy = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives.to_string()});
        let q = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
            .attributes(QueueAttributeName::VisibilityTimeout, "60")
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|x| e("CreateQueue", failure(&x)))?;
        Ok(q.queue_url().unwrap_or_default().to_string())
    }
}

/// The URL of the queue with ARN `arn`, next to the queue at `url`. SQS keeps
/// a dead-letter queue in the same account and region as its source queue,
/// so its URL is the source's with the account and name of the ARN: no
/// GetQueueUrl call (and no permission for it) is needed.
fn sibling_url(url: &str, arn: &str) -> Option<String> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(account), Some(name), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let base = url.trim_end_matches('/');
    let (rest, _name) = base.rsplit_once('/')?;
    let (host, _account) = rest.rsplit_once('/')?;
    (!name.is_empty() && host.contains("://")).then(|| format!("{host}/{account}/{name}"))
}

/// The start of a receipt handle, for messages (they are long).
fn short(receipt: &str) -> String {
    receipt.chars().take(24).chain("…".chars()).collect()
}

#[async_trait]
impl JobQueue for SqsQueue {
    fn describe(&self) -> String {
        format!("SQS queue {}", self.url)
    }

    fn max_batch(&self) -> usize {
        10
    }

    fn max_hidden(&self) -> Option<Duration> {
        Some(SQS_MAX_HIDDEN)
    }

    async fn max_receives(&self) -> Result<Option<u32>, QueueError> {
        Ok(self.redrive().await?.map(|r| r.max_receives))
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<Result<(), SendFailure>>, QueueError> {
        let mut results: Vec<Result<(), SendFailure>> = vec![Ok(()); bodies.len()];
        let mut entries = Vec::new();
        for (i, body) in bodies.iter().enumerate().take(10) {
            if body.len() > SQS_MAX_BODY {
                results[i] = Err(SendFailure::invalid(format!(
                    "a job message of {} bytes exceeds SQS's limit of {SQS_MAX_BODY} bytes",
                    body.len()
                )));
                continue;
            }
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .expect("id and body are set"),
            );
        }
        for r in results.iter_mut().skip(10) {
            *r = Err(SendFailure::invalid("more than 10 messages in one SQS batch"));
        }
        if entries.is_empty() {
            return Ok(results);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.err("SendMessageBatch", failure(&e)))?;
        for f in out.failed() {
            if let Ok(i) = f.id().parse::<usize>() {
                if let Some(r) = results.get_mut(i) {
                    let message = format!("{}: {}", f.code(), f.message().unwrap_or("refused"));
                    // SQS marks refusals that are the sender's fault (too
                    // large, malformed) as sender faults: not worth another try.
                    *r = Err(match f.sender_fault() {
                        true => SendFailure::invalid(message),
                        false => SendFailure::transient(message),
                    });
                }
            }
        }
        Ok(results)
    }

    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(secs(lease).max(1))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names(ORIGIN_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| self.err("ReceiveMessage", failure(&e)))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receives = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let sent_at = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse().ok());
                let origin = m
                    .message_attributes()
                    .and_then(|a| a.get(ORIGIN_ATTRIBUTE))
                    .and_then(|v| v.string_value());
                Some(Message {
                    receipt: m.receipt_handle()?.to_string(),
                    id: origin.or(m.message_id()).unwrap_or_default().to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receives,
                    sent_at,
                })
            })
            .collect())
    }

    async fn extend(&self, receipt: &str, lease: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(lease))
            .send()
            .await
            .map_err(|e| self.receipt_err("ChangeMessageVisibility", receipt, failure(&e)))?;
        Ok(())
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.receipt_err("DeleteMessage", receipt, failure(&e)))?;
        Ok(())
    }

    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let chunks: Vec<(usize, Vec<String>)> = receipts.chunks(10).map(<[String]>::to_vec).enumerate().collect();
        let done: Vec<(usize, Vec<Result<(), QueueError>>)> = stream::iter(chunks)
            .map(|(n, chunk)| async move {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .build()
                            .expect("id and receipt are set")
                    })
                    .collect();
                let out = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                let results = match out {
                    Err(e) => {
                        let f = failure(&e);
                        chunk
                            .iter()
                            .map(|_| Err(self.err("DeleteMessageBatch", f.clone())))
                            .collect()
                    }
                    Ok(out) => {
                        let failed: HashMap<&str, String> = out
                            .failed()
                            .iter()
                            .map(|f| (f.id(), format!("{}: {}", f.code(), f.message().unwrap_or(""))))
                            .collect();
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(i, r)| match failed.get(i.to_string().as_str()) {
                                None => Ok(()),
                                Some(m) if m.contains("ReceiptHandleIsInvalid") => Err(QueueError::LeaseLost {
                                    queue: self.describe(),
                                    receipt: short(r),
                                }),
                                Some(m) => Err(QueueError::Service {
                                    queue: self.describe(),
                                    operation: "DeleteMessageBatch".into(),
                                    message: m.clone(),
                                }),
                            })
                            .collect()
                    }
                };
                (n, results)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut done = done;
        done.sort_by_key(|(n, _)| *n);
        done.into_iter().flat_map(|(_, r)| r).collect()
    }

    async fn nack(&self, receipt: &str, delay: Duration, error: &str) -> Result<(), QueueError> {
        tracing::debug!(error, delay_s = delay.as_secs(), "Giving a message back to SQS.");
        self.extend(receipt, delay).await
    }

    async fn release_many(&self, receipts: &[String]) {
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt are set")
                })
                .collect();
            if let Err(e) = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error = %failure(&e), "Could not give messages back to SQS; they return when their lease ends.");
            }
        }
    }

    async fn requeue(&self, msg: &Message) -> Result<(), QueueError> {
        self.send_tagged(&self.url, &msg.body, ORIGIN_ATTRIBUTE, &msg.id, "SendMessage (requeue)")
            .await?;
        self.ack(&msg.receipt).await
    }

    async fn dead_letter(&self, msg: &Message, error: &str) -> Result<(), QueueError> {
        match self.redrive().await? {
            Some(r) => {
                let clipped: String = error.chars().take(1000).collect();
                let error = if clipped.is_empty() { "-" } else { &clipped };
                self.send_tagged(
                    &r.dlq_url,
                    &msg.body,
                    ERROR_ATTRIBUTE,
                    error,
                    "SendMessage (dead-letter queue)",
                )
                .await?;
            }
            None => tracing::warn!(
                message_id = %msg.id,
                "The queue has no dead-letter queue: the job given up is kept in the ledger only (ferry-finder status names it; the next finder run queues it again)."
            ),
        }
        self.ack(&msg.receipt).await
    }

    async fn redrive_dead(&self) -> Result<u64, QueueError> {
        let Some(r) = self.redrive().await? else {
            return Ok(0);
        };
        let mut moved = 0u64;
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&r.dlq_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(60)
                .send()
                .await
                .map_err(|e| self.err("ReceiveMessage (dead-letter queue)", failure(&e)))?;
            let msgs: Vec<(String, String)> = out
                .messages()
                .iter()
                .filter_map(|m| Some((m.body()?.to_string(), m.receipt_handle()?.to_string())))
                .collect();
            if msgs.is_empty() {
                return Ok(moved);
            }
            let bodies: Vec<String> = msgs.iter().map(|(b, _)| b.clone()).collect();
            let sent = self.send_batch(&bodies).await?;
            for ((_, receipt), ok) in msgs.iter().zip(&sent) {
                if ok.is_err() {
                    continue; // Stays in the dead-letter queue, visible again in a minute.
                }
                self.client
                    .delete_message()
                    .queue_url(&r.dlq_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(|e| self.err("DeleteMessage (dead-letter queue)", failure(&e)))?;
                moved += 1;
            }
            if let Some(Err(e)) = sent.into_iter().find(Result::is_err) {
                return Err(QueueError::Service {
                    queue: self.describe(),
                    operation: "SendMessageBatch (redrive)".into(),
                    message: e.to_string(),
                });
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let c = self
            .count(
                &self.url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let dead = match self.redrive().await? {
            Some(r) => {
                self.count(&r.dlq_url, &[QueueAttributeName::ApproximateNumberOfMessages])
                    .await?[0]
            }
            None => 0,
        };
        Ok(QueueStats {
            ready: c[0],
            in_flight: c[1] + c[2],
            dead,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sibling_url;

    #[test]
    fn a_dead_letter_queue_url_comes_from_its_arn() {
        assert_eq!(
            sibling_url(
                "https://sqs.eu-west-1.amazonaws.com/123456789012/ferry-jobs",
                "arn:aws:sqs:eu-west-1:123456789012:ferry-dlq"
            )
            .as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/ferry-dlq")
        );
        assert_eq!(
            sibling_url(
                "http://127.0.0.1:5055/000000000000/q/",
                "arn:aws-cn:sqs:cn-north-1:000000000000:q-dlq"
            )
            .as_deref(),
            Some("http://127.0.0.1:5055/000000000000/q-dlq")
        );
        assert_eq!(sibling_url("https://x/1/q", "arn:aws:sns:r:1:q"), None);
        assert_eq!(sibling_url("https://x/1/q", "not an arn"), None);
        assert_eq!(sibling_url("q", "arn:aws:sqs:r:1:d"), None);
    }
}
