use crate::error::{Error, ErrorKind, Result};

/// The Redis keys of one queue (or one dead-letter queue).
///
/// The default layout is LeanMQ 0.2's, so Python `leanmq` clients share the
/// queues: stream `P NAME`, metadata hash `P NAME:metadata`, TTL index
/// `P NAME:expiry`, group `NAME-group`. eddy adds one key LeanMQ ignores:
/// `P NAME:delayed`, the entries waiting for their delivery time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct QueueKeys {
    /// The queue's name without prefix (`orders`, or `orders:dlq`).
    pub name: String,
    /// The stream key.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// The metadata hash.
    pub meta: String,
    /// The TTL index: stream id → expiry time in float epoch seconds.
    pub expiry: String,
    /// Delayed entries: score = due time in epoch milliseconds.
    pub delayed: String,
    /// Whether this is a dead-letter queue.
    pub is_dlq: bool,
    /// For a queue, its DLQ's stream key; for a DLQ, its queue's stream key.
    pub peer_stream: String,
}

/// Spells key names for a prefix.
///
/// ```
/// let layout = eddy::engine::KeyLayout::new("mq:")?;
/// let keys = layout.queue("orders")?;
/// assert_eq!(keys.stream, "mq:orders");
/// assert_eq!(keys.group, "orders-group");
/// assert_eq!(layout.dlq("orders")?.group, "orders-group-dlq");
/// # Ok::<(), eddy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

/// The longest queue name accepted.
pub const MAX_NAME_LEN: usize = 200;

impl KeyLayout {
    /// A layout under `prefix` (LeanMQ's default is `mq:`).
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.len() > MAX_NAME_LEN
            || prefix.contains(['{', '}'])
            || prefix.chars().any(char::is_whitespace)
        {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!("invalid prefix `{prefix}`: at most {MAX_NAME_LEN} characters, no whitespace or braces"),
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The registry set of every queue's and DLQ's stream key.
    pub fn registry(&self) -> String {
        format!("{}registry", self.prefix)
    }

    /// The keys of queue `name`.
    pub fn queue(&self, name: &str) -> Result<QueueKeys> {
        validate_name(name)?;
        let stream = format!("{}{name}", self.prefix);
        Ok(QueueKeys {
            name: name.to_owned(),
            group: format!("{name}-group"),
            meta: format!("{stream}:metadata"),
            expiry: format!("{stream}:expiry"),
            delayed: format!("{stream}:delayed"),
            is_dlq: false,
            peer_stream: format!("{stream}:dlq"),
            stream,
        })
    }

    /// The keys of the dead-letter queue of queue `name`.
    pub fn dlq(&self, name: &str) -> Result<QueueKeys> {
        validate_name(name)?;
        let main = format!("{}{name}", self.prefix);
        let stream = format!("{main}:dlq");
        Ok(QueueKeys {
            name: format!("{name}:dlq"),
            group: format!("{name}-group-dlq"),
            meta: format!("{stream}:metadata"),
            expiry: format!("{stream}:expiry"),
            delayed: format!("{stream}:delayed"),
            is_dlq: true,
            peer_stream: main,
            stream,
        })
    }

    /// The queue name of a registry member (a full stream key), and whether
    /// it is a DLQ; `None` if it is not under this prefix.
    pub fn parse_stream_key(&self, key: &str) -> Option<(String, bool)> {
        let name = key.strip_prefix(&self.prefix)?;
        match name.strip_suffix(":dlq") {
            Some(main) => Some((main.to_owned(), true)),
            None => Some((name.to_owned(), false)),
        }
    }
}

/// Check a queue, service or path name: 1 to 200 characters from
/// `[A-Za-z0-9_.:-]`, not ending in `:dlq`, `:metadata`, `:expiry` or
/// `:delayed` (those would collide with another queue's keys).
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    let reserved = [":dlq", ":metadata", ":expiry", ":delayed"]
        .iter()
        .any(|s| name.ends_with(s));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || reserved || name == "registry" {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "invalid name `{}`: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ - . : (not ending in :dlq, :metadata, :expiry or :delayed)",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Check a consumer name: 1 to 200 printable characters, no whitespace.
pub fn validate_consumer(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!("invalid consumer name `{}`: use 1 to {MAX_NAME_LEN} printable characters without spaces", name.escape_debug()),
        ));
    }
    Ok(())
}
