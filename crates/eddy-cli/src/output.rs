//! Everything the CLI prints on stdout: human tables or JSON lines.
//!
//! Human output never carries a raw control character from the data: queue
//! names, message data, failure reasons and error messages can come from
//! anyone who can write to Redis, and an ESC sequence in them would drive
//! the reader's terminal. [`escape_controls`] shows each one as an escape
//! instead; --json output is JSON, escaped by its own rules.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use eddy::{Failure, Message, QueueInfo};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Where and how results are printed.
#[derive(Debug)]
pub struct Output {
    json: bool,
    out: io::StdoutLock<'static>,
}

impl Output {
    /// Human output, or JSON when `json`.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            out: io::stdout().lock(),
        }
    }

    /// A command's result: `machine` as one JSON object with --json, else
    /// the `human` line.
    pub fn result(&mut self, machine: Value, human: &str) -> io::Result<()> {
        self.result_of(&machine, human)
    }

    /// [`Output::result`] for anything that serializes as one JSON object.
    pub fn result_of<T: Serialize + ?Sized>(&mut self, machine: &T, human: &str) -> io::Result<()> {
        if self.json {
            self.json_line(machine)
        } else {
            writeln!(self.out, "{}", escape_lines(human))
        }
    }

    fn json_line<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        writeln!(self.out)
    }

    /// Messages from receive or peek: each payload printed as it is stored
    /// (`Message::payload_json`), its key order and big integers as the
    /// sender wrote them.
    pub fn messages(&mut self, messages: &[Message]) -> io::Result<()> {
        if self.json {
            for m in messages {
                self.json_line(&m.to_json())?;
            }
            return Ok(());
        }
        if messages.is_empty() {
            return writeln!(self.out, "no messages");
        }
        let mut table = Table::new(["ID", "DELIVERIES", "TIMESTAMP", "DATA"]);
        for m in messages {
            table.row(message_row(m, &m.payload_json(&[])));
        }
        write!(self.out, "{}", table.render())
    }

    /// One message as it arrives (`receive --follow`): a JSON line, or the
    /// row of [`Output::messages`] unaligned; flushed at once, so a reader
    /// of a pipe sees it before it is acknowledged.
    pub fn message_line(&mut self, m: &Message) -> io::Result<()> {
        if self.json {
            self.json_line(&m.to_json())?;
        } else {
            let row = message_row(m, &m.payload_json(&[]))
                .map(|cell| escape_controls(&cell).into_owned());
            writeln!(self.out, "{}", row.join("  "))?;
        }
        self.out.flush()
    }

    /// One line of text as it is (JSON already), flushed; control
    /// characters escaped for people.
    pub fn line(&mut self, text: &str) -> io::Result<()> {
        if self.json {
            writeln!(self.out, "{text}")?;
        } else {
            writeln!(self.out, "{}", escape_controls(text))?;
        }
        self.out.flush()
    }

    /// Text the caller has already escaped (terminal controls of its own,
    /// such as a redraw), written as it is and flushed.
    pub fn raw(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "{text}")?;
        self.out.flush()
    }

    /// Dead-letter queue messages, each with its failures.
    pub fn dead_letters(&mut self, messages: &[Message]) -> io::Result<()> {
        if self.json {
            #[derive(Serialize)]
            struct Line<'a> {
                id: String,
                data: &'a RawValue,
                timestamp: f64,
                delivery_count: u64,
                failures: Vec<Failure>,
            }
            for m in messages {
                let data = m.payload_json(&[]);
                self.json_line(&Line {
                    id: m.id.to_string(),
                    data: &data,
                    timestamp: m.timestamp,
                    delivery_count: m.delivery_count,
                    failures: m.failures(),
                })?;
            }
            return Ok(());
        }
        if messages.is_empty() {
            return writeln!(self.out, "no messages");
        }
        // The failures are printed under each message, not inside its data.
        let mut table = Table::new(["ID", "DELIVERIES", "TIMESTAMP", "DATA"]);
        let mut failures = Vec::with_capacity(messages.len());
        for m in messages {
            table.row(message_row(m, &m.payload_json(&["_failures"])));
            failures.push(m.failures());
        }
        let rendered = table.render();
        let mut lines = rendered.lines();
        if let Some(header) = lines.next() {
            writeln!(self.out, "{header}")?;
        }
        for (line, failures) in lines.zip(failures) {
            writeln!(self.out, "{line}")?;
            if failures.is_empty() {
                writeln!(self.out, "    (no failure recorded)")?;
            }
            for f in failures {
                writeln!(
                    self.out,
                    "    failed {}  {}",
                    format_timestamp(Some(f.timestamp)),
                    escape_controls(&f.reason)
                )?;
            }
        }
        Ok(())
    }

    /// One queue's state.
    pub fn info(&mut self, info: &QueueInfo) -> io::Result<()> {
        if self.json {
            return self.json_line(&serde_json::to_value(info)?);
        }
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut table = Table::headless();
        for (k, v) in [
            ("name", info.name.clone()),
            ("stream", info.stream.clone()),
            ("dead-letter queue", yes_no(info.is_dlq)),
            ("consumer group", info.consumer_group.clone()),
            ("length", info.length.to_string()),
            ("pending", info.pending.to_string()),
            ("lag", lag(info)),
            ("delayed", info.delayed.to_string()),
            (
                "oldest pending idle",
                info.oldest_pending_idle_ms
                    .map_or_else(|| "-".to_owned(), format_ms),
            ),
            (
                "oldest pending age",
                info.oldest_pending_age_ms
                    .map_or_else(|| "-".to_owned(), format_ms),
            ),
            ("created", format_timestamp(info.created_at)),
        ] {
            table.row([k.to_owned(), v]);
        }
        write!(self.out, "{}", table.render())?;
        if info.consumers.is_empty() {
            return writeln!(self.out, "consumers  none");
        }
        writeln!(self.out, "consumers")?;
        let mut consumers = Table::new(["  NAME", "PENDING", "IDLE"]);
        for c in &info.consumers {
            consumers.row([
                format!("  {}", c.name),
                c.pending.to_string(),
                format_ms(c.idle_ms),
            ]);
        }
        write!(self.out, "{}", consumers.render())
    }

    /// Every queue under the prefix. A broken queue (one that could not be
    /// read) is a row with `-` for its counts and its error in a last
    /// `ERROR` column, shown only when some row has one; in JSON each row
    /// has `error` (null when healthy).
    pub fn queues(&mut self, queues: &[QueueInfo]) -> io::Result<()> {
        if self.json {
            for q in queues {
                self.json_line(&serde_json::to_value(q)?)?;
            }
            return Ok(());
        }
        if queues.is_empty() {
            return writeln!(self.out, "no queues");
        }
        let header = [
            "NAME",
            "LENGTH",
            "PENDING",
            "LAG",
            "DELAYED",
            "CONSUMERS",
            "CREATED",
        ];
        let broken = queues.iter().any(|q| q.error.is_some());
        let mut table = Table::default();
        let mut head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
        if broken {
            head.push("ERROR".to_owned());
        }
        table.rows.push(head);
        for q in queues {
            let mut row = match &q.error {
                Some(_) => {
                    let mut row = vec![q.name.clone()];
                    row.extend(std::iter::repeat_n("-".to_owned(), header.len() - 1));
                    row
                }
                None => vec![
                    q.name.clone(),
                    q.length.to_string(),
                    q.pending.to_string(),
                    lag(q),
                    q.delayed.to_string(),
                    q.consumers.len().to_string(),
                    format_timestamp(q.created_at),
                ],
            };
            if broken {
                row.push(q.error.clone().unwrap_or_default());
            }
            table.rows.push(row);
        }
        write!(self.out, "{}", table.render())
    }

    /// Flush stdout.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn message_row(m: &Message, data: &RawValue) -> [String; 4] {
    [
        m.id.to_string(),
        m.delivery_count.to_string(),
        format_timestamp(Some(m.timestamp)),
        data.get().to_owned(),
    ]
}

/// Columns padded to their widest cell; the last column is not padded.
#[derive(Debug, Default)]
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new<const N: usize>(header: [&str; N]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn headless() -> Self {
        Self::default()
    }

    /// A row; its cells are escaped here, so the widths are those printed.
    fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| match escape_controls(&c) {
                    Cow::Borrowed(_) => c,
                    Cow::Owned(escaped) => escaped,
                })
                .collect(),
        );
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` safe to print on a terminal, on one line: tab, line feed and
/// carriage return as `\t`, `\n`, `\r`; every other C0 control and DEL as
/// `\x1b`-style escapes; C1 controls (U+0080 to U+009F, which some
/// terminals obey like ESC sequences) and the bidirectional overrides and
/// isolates (which reorder what is shown) as `\u{9b}`-style escapes.
/// Backslashes are left alone: --json shows the exact text.
/// A queue's lag, `~N` where it is an estimate.
fn lag(info: &QueueInfo) -> String {
    if info.lag_estimated {
        format!("~{}", info.lag)
    } else {
        info.lag.to_string()
    }
}

pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape_controls`] line by line: the line feeds of a multi-line text
/// are its layout, and stay.
pub fn escape_lines(text: &str) -> String {
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(escape_controls).collect();
    lines.join("\n")
}

/// Milliseconds as `850ms`, `12.3s`, `4m05s` or `2h03m`.
fn format_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Float epoch seconds as `2024-05-01T12:00:00.123Z` (UTC), `-` if unknown.
fn format_timestamp(secs: Option<f64>) -> String {
    let Some(secs) = secs.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".to_owned();
    };
    let total_ms = (secs * 1000.0).round() as u64;
    let (days, ms_of_day) = (total_ms / 86_400_000, total_ms % 86_400_000);
    let (y, m, d) = civil_from_days(days);
    let s = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms_of_day % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_in_utc() {
        assert_eq!(format_timestamp(Some(0.0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(Some(1_700_000_000.123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            format_timestamp(Some(951_782_400.0)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_timestamp(None), "-");
        assert_eq!(format_timestamp(Some(f64::NAN)), "-");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_ms(850), "850ms");
        assert_eq!(format_ms(12_345), "12.3s");
        assert_eq!(format_ms(245_000), "4m05s");
        assert_eq!(format_ms(7_380_000), "2h03m");
    }

    #[test]
    fn escapes_control_characters() {
        assert!(matches!(escape_controls("plain é ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\x1b[2Jb\x07\x00\x7f\t\n\r\u{9b}1m\u{202e}\\x"),
            r"a\x1b[2Jb\x07\x00\x7f\t\n\r\u{9b}1m\u{202e}\x"
        );
        let mut t = Table::new(["A", "B"]);
        t.row(["\x1b".into(), "x".into()]);
        assert_eq!(t.render(), "A     B\n\\x1b  x\n");
        assert_eq!(escape_lines("a\x1b\nb\tc\n"), "a\\x1b\nb\\tc\n");
    }

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(["A", "LONG HEADER", "C"]);
        t.row(["wide cell".into(), "x".into(), "last".into()]);
        assert_eq!(
            t.render(),
            "A          LONG HEADER  C\nwide cell  x            last\n"
        );
    }
}
