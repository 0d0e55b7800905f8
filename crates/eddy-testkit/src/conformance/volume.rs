//! Volume: nothing is trimmed while unconsumed.

use serde_json::Value;

use super::{ns, numbered, CaseResult, Harness, Outcome};

/// 20,000 unconsumed messages are all kept: no send trims the stream.
pub async fn no_send_trims_unconsumed_messages(h: &Harness) -> CaseResult {
    const TOTAL: u64 = 20_000;
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("volume").await?;
    for start in (0..TOTAL).step_by(1000) {
        let batch: Vec<Value> = (start..start + 1000).map(numbered).collect();
        q.send_batch(&batch).await?;
    }
    let info = q.info().await?;
    assert_eq!((info.length, info.lag, info.pending), (TOTAL, TOTAL, 0));
    assert_eq!(ns(&q.peek(1).await?), vec![0]);
    let last = h
        .engine()
        .info(q.keys())
        .await?
        .last_id
        .expect("a last entry");
    assert_eq!(ns(&q.peek_from(last, 10).await?), vec![TOTAL - 1]);
    Ok(Outcome::Passed)
}
