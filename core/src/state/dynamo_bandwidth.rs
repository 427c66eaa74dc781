//! A fleet-wide bandwidth limit in the DynamoDB table: one item per queue
//! name, `pk = bw#<name>`, `sk = bw`, holding the limit's text and the
//! fleet's pacing time `tat_us`. A reservation reads the item and writes
//! the moved `tat_us` on the condition that it is still what was read; a
//! worker that lost the race gets the current item with the refusal and
//! tries again from it.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::{failure, get_n, get_s, item_key, n, s, DynamoStateStore, StateError};

/// Tries of a reservation that keeps losing races to other workers.
const RACE_TRIES: u32 = 50;

fn bw_key(name: &str) -> super::Item {
    item_key(format!("bw#{name}"), "bw")
}

impl DynamoStateStore {
    /// The bandwidth item of `name`, strongly consistent.
    async fn bw_item(&self, name: &str) -> Result<Option<super::Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(bw_key(name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem (bandwidth)", failure(&e)))?;
        Ok(out.item)
    }
}

#[async_trait::async_trait]
impl crate::bandwidth::SharedBandwidth for DynamoStateStore {
    async fn fleet_limit(&self, name: &str) -> Result<Option<String>, StateError> {
        Ok(self.bw_item(name).await?.and_then(|i| get_s(&i, "limit_text")))
    }

    async fn set_fleet_limit(&self, name: &str, limit: Option<&str>) -> Result<(), StateError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(bw_key(name)));
        let req = match limit {
            Some(l) => req
                .update_expression("SET limit_text = :l")
                .expression_attribute_values(":l", s(l)),
            None => req.update_expression("REMOVE limit_text"),
        };
        req.send()
            .await
            .map_err(|e| self.err("UpdateItem (bandwidth)", failure(&e)))?;
        Ok(())
    }

    async fn reserve(&self, name: &str, bytes: u64, rate: u64, now_us: i64) -> Result<i64, StateError> {
        let cost = crate::bandwidth::cost_us(bytes, rate);
        let mut was: Option<i64> = self.bw_item(name).await?.and_then(|i| get_n(&i, "tat_us"));
        for _ in 0..RACE_TRIES {
            let tat = was.unwrap_or(0).max(now_us).saturating_add(cost);
            let req = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(bw_key(name)))
                .update_expression("SET tat_us = :new")
                .expression_attribute_values(":new", n(tat))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            let req = match was {
                Some(w) => req
                    .condition_expression("tat_us = :was")
                    .expression_attribute_values(":was", n(w)),
                None => req.condition_expression("attribute_not_exists(tat_us)"),
            };
            match req.send().await {
                Ok(_) => return Ok(tat),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        was = c.item().and_then(|i| get_n(i, "tat_us"));
                    }
                    _ => return Err(self.err("UpdateItem (bandwidth)", failure(&e))),
                },
            }
        }
        Err(StateError::Service {
            store: self.describe(),
            operation: "UpdateItem (bandwidth)".into(),
            message: format!("{RACE_TRIES} reservations in a row lost the race to other workers"),
        })
    }
}
