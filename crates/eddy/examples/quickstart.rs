//! cargo run -p eddy --example quickstart            # embedded engine
//! cargo run -p eddy --example quickstart -- redis://127.0.0.1:6379/0
//!
//! A queue with a dead-letter queue: send, receive, acknowledge, dead-letter
//! a message that cannot be handled, requeue it, and look at the queue.

use std::time::Duration;

use eddy::{Eddy, Receive, SendOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> eddy::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".into());
    let mq = Eddy::open(&url).await?;
    println!("engine: {}", mq.engine().describe());

    let (emails, dlq) = mq.create_queue_pair("quickstart-emails").await?;
    for to in ["ada@example.com", "grace@example.com", "not-an-address"] {
        let id = emails
            .send(&json!({ "to": to, "subject": "hello" }))
            .await?;
        println!("sent {id} to {to}");
    }
    // A message that disappears if nobody reads it within a minute.
    emails
        .send_with(
            &json!({ "to": "linus@example.com", "subject": "expires" }),
            &SendOptions::new().ttl(Duration::from_secs(60)),
        )
        .await?;

    let batch = emails
        .receive(&Receive::new().count(10).block(Duration::from_secs(1)))
        .await?;
    for msg in batch {
        let to = msg.data["to"].as_str().unwrap_or_default();
        if to.contains('@') {
            println!(
                "delivered {} (delivery #{}) to {to}",
                msg.id, msg.delivery_count
            );
            emails.ack(&[msg.id]).await?;
        } else {
            println!("dead-lettering {}: bad address {to:?}", msg.id);
            emails
                .dead_letter_messages(&[msg], "invalid address")
                .await?;
        }
    }

    for msg in dlq.peek(10).await? {
        let reasons: Vec<_> = msg.failures().into_iter().map(|f| f.reason).collect();
        println!(
            "in the DLQ: {} {:?}",
            serde_json::Value::Object(msg.data.clone()),
            reasons
        );
    }
    println!("requeued {}", dlq.requeue_all().await?);

    let info = emails.info().await?;
    println!(
        "queue {}: length {}, pending {}, lag {}",
        info.name, info.length, info.pending, info.lag
    );
    mq.delete_queue("quickstart-emails", false).await?;
    Ok(())
}
