//! The CLI half of the fuzz target (issue 13): arbitrary input (JSON-ish
//! lines, invalid UTF-8, huge numbers, control characters, blank lines,
//! reserved fields) to `eddy queue send q -` and `eddy queue send q JSON`
//! against a real `redis-server`. The binary never panics: it exits 0 having
//! sent exactly the non-blank lines, or 1 with one `error:` line having
//! sent exactly the non-blank lines before the first bad one (stdin is
//! sent as it comes) — for an argument, nothing.
//!
//! `PROPTEST_CASES` sets the number of cases (32 by default; each runs the
//! binary twice).

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;

use eddy_testkit::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

const RESERVED: [&str; 4] = ["_metadata", "_failures", "_requeues", "_leanmq"];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32)
}

/// One line of input: mostly objects, some of them broken.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let string = prop::collection::vec(
        prop_oneof![
            3 => any::<char>()
                .prop_filter("written as it is", |c| *c != '"' && *c != '\\' && *c != '\n')
                .prop_map(String::from),
            1 => prop::sample::select(vec![r"\n", r"\u00e9", r"\udc00", r"\ud83d\ude00", "\u{1b}[31m", "\t"])
                .prop_map(String::from),
        ],
        0..6,
    )
    .prop_map(|p| format!("\"{}\"", p.concat()));
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::collection::vec(0u8..10, 20..400).prop_map(|d| format!(
            "9{}",
            d.iter().map(|d| char::from(b'0' + d)).collect::<String>()
        )),
        prop::sample::select(vec![
            "1e308", "1e999999", "-0", "NaN", "Infinity", "1.", "01"
        ])
        .prop_map(String::from),
    ];
    let value = prop_oneof![
        string.clone(),
        number,
        Just("null".to_owned()),
        Just("[1,{}]".to_owned())
    ];
    let key = prop_oneof![
        3 => string,
        1 => prop::sample::select(vec![
            r#""_metadata""#, r#""_failures""#, r#""_requeues""#, r#""_leanmq""#,
            r#""\u005ffailures""#, r#""_x""#,
        ])
        .prop_map(String::from),
    ];
    let object = prop::collection::vec((key, value), 0..4).prop_map(|members| {
        let members: Vec<String> = members
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("{{{}}}", members.join(", "))
    });
    let edit = (any::<prop::sample::Index>(), any::<u8>(), any::<bool>());
    prop_oneof![
        6 => object.clone().prop_map(String::into_bytes),
        2 => (object, edit).prop_map(|(o, (at, byte, cut))| {
            let mut b = o.into_bytes();
            let i = at.index(b.len());
            if cut { b.truncate(i) } else if byte != b'\n' { b.insert(i, byte) }
            b
        }),
        1 => prop::sample::select(vec![
            "", " ", "\t", "\r", "[1]", "\"s\"", "1", "null", "{} {}", "{", "}", "\u{0}",
            "{\"a\":\"\u{1}\"}", "{\"a\":1}\r",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8)
            .prop_map(|b| b.into_iter().filter(|b| *b != b'\n').collect()),
    ]
}

/// Whether the CLI should take this line (a JSON object with no reserved
/// field), as serde_json reads it.
fn accepted(line: &str) -> bool {
    matches!(serde_json::from_str::<Value>(line), Ok(Value::Object(m))
        if !m.keys().any(|k| RESERVED.contains(&k.as_str())))
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn eddy(url: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("EDDY_URL")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the eddy binary");
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let out = child.wait_with_output().expect("wait for eddy");
    if let Some(w) = writer {
        w.join().expect("stdin writer");
    }
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn xlen(conn: &mut redis::Connection) -> Result<u64, TestCaseError> {
    redis::cmd("XLEN")
        .arg("mq:q")
        .query(conn)
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

/// What a run should do: send this many messages, and then succeed or
/// refuse the rest.
#[derive(Debug, Clone, Copy)]
struct Expect {
    sent: u64,
    refused: bool,
}

/// What `eddy queue send q -` should make of these stdin lines: the
/// non-blank ones up to the first that is not UTF-8 or not accepted.
fn expect_stdin<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Expect {
    let mut sent = 0;
    for line in lines {
        match std::str::from_utf8(line) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) if accepted(text) => sent += 1,
            _ => {
                return Expect {
                    sent,
                    refused: true,
                }
            }
        }
    }
    Expect {
        sent,
        refused: false,
    }
}

/// Run `eddy queue send q ARGS` and check its outcome against `expect`.
fn check(
    url: &str,
    conn: &mut redis::Connection,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    expect: Expect,
    what: &str,
) -> Result<(), TestCaseError> {
    let before = xlen(conn)?;
    let mut all = vec!["queue", "send", "q"];
    all.extend(args);
    let run = eddy(url, &all, stdin);
    let after = xlen(conn)?;
    let show = || {
        format!(
            "{what}\nexit {:?}\nstdout {:?}\nstderr {:?}",
            run.code, run.stdout, run.stderr
        )
    };
    prop_assert!(!run.stderr.contains("panicked"), "{}", show());
    prop_assert_eq!(after - before, expect.sent, "{}", show());
    if expect.refused {
        prop_assert_eq!(run.code, Some(1), "{}", show());
        prop_assert!(run.stdout.is_empty(), "{}", show());
        prop_assert!(
            run.stderr.starts_with("error: ") && run.stderr.lines().count() == 1,
            "{}",
            show()
        );
    } else {
        prop_assert_eq!(run.code, Some(0), "{}", show());
    }
    Ok(())
}

#[test]
fn send_takes_the_valid_lines_up_to_the_first_bad_one() {
    let server = RedisServer::start().expect("start redis-server");
    let url = server.url();
    let created = eddy(&url, &["queue", "create", "q"], None);
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let conn = std::cell::RefCell::new(
        redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("a connection"),
    );

    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let input = (prop::collection::vec(line(), 1..8), any::<bool>());
    runner
        .run(&input, |(lines, crlf)| {
            let mut stdin = lines.join(if crlf { &b"\r\n"[..] } else { b"\n" });
            stdin.push(b'\n');
            let expected = expect_stdin(lines.iter().map(Vec::as_slice));
            let what = format!("stdin {:?}", String::from_utf8_lossy(&stdin));
            check(
                &url,
                &mut conn.borrow_mut(),
                &["-"],
                Some(stdin),
                expected,
                &what,
            )?;

            // The first line alone, as the argument (an argument cannot
            // hold invalid UTF-8 or a NUL; `-` means stdin).
            if let Ok(first) = std::str::from_utf8(&lines[0]) {
                if !first.contains('\0') && first.trim() != "-" {
                    let ok = accepted(first);
                    let expected = Expect {
                        sent: u64::from(ok),
                        refused: !ok,
                    };
                    let what = format!("argument {first:?}");
                    check(
                        &url,
                        &mut conn.borrow_mut(),
                        &["--", first],
                        None,
                        expected,
                        &what,
                    )?;
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Issue 13's inputs, every time.
#[test]
fn corpus() {
    let server = RedisServer::start().expect("start redis-server");
    let url = server.url();
    assert_eq!(eddy(&url, &["queue", "create", "q"], None).code, Some(0));
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("a connection");
    let run = |conn: &mut redis::Connection, stdin: &[u8], sent: u64, refused: bool| {
        let what = format!(
            "stdin {:?}",
            String::from_utf8_lossy(&stdin[..stdin.len().min(200)])
        );
        let expect = Expect { sent, refused };
        check(&url, conn, &["-"], Some(stdin.to_vec()), expect, &what)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    run(&mut conn, b"{\"a\":1}\n\n   \n{\"b\":2}\n", 2, false);
    run(&mut conn, b"{\"a\":1}\n{\"x\": NaN}\n{\"c\":3}\n", 1, true);
    run(
        &mut conn,
        b"{\"a\":1}\n{\"x\":\"\xff\"}\n{\"c\":3}\n",
        1,
        true,
    );
    run(&mut conn, b"{\"x\":\"\\udc00\"}\n", 0, true);
    run(
        &mut conn,
        b"{\"price\": 1e308, \"quantity\": 2}\n",
        1,
        false,
    );
    // Found by the generator: only JSON's whitespace may surround a line.
    run(&mut conn, b"\x0b{}\n", 0, true);
    run(&mut conn, "\u{a0}{}\n".as_bytes(), 0, true);
    run(&mut conn, b" \t{}\t \n", 1, false);
    for field in RESERVED {
        run(
            &mut conn,
            format!("{{\"a\":1}}\n{{\"{field}\":[]}}\n").as_bytes(),
            1,
            true,
        );
    }
    run(&mut conn, b"{\"a\":1}\n{\"\\u005ffailures\":[]}\n", 1, true);
    let deep = format!("{{\"x\":{}0{}}}\n", "[".repeat(200), "]".repeat(200));
    run(&mut conn, deep.as_bytes(), 0, true);
    // Over the default 1 MiB limit, then within a raised one.
    let big = format!("{{\"blob\":\"{}\"}}\n", "z".repeat(2 << 20));
    run(&mut conn, big.as_bytes(), 0, true);
    let before = xlen(&mut conn).unwrap();
    let raised = eddy_big(&url, big.into_bytes());
    assert_eq!(raised.code, Some(0), "{}", raised.stderr);
    assert_eq!(xlen(&mut conn).unwrap(), before + 1);
}

fn eddy_big(url: &str, stdin: Vec<u8>) -> Run {
    eddy(
        url,
        &["--max-payload-bytes", "10000000", "queue", "send", "q", "-"],
        Some(stdin),
    )
}
