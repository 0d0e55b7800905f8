//! An event's trace context: the W3C `traceparent` of its envelope, to and
//! from the OpenTelemetry context of `tracing` spans (feature `otel`).
//!
//! With `otel`, a publish writes the current span's context into the
//! envelope, and a delivery's span takes the envelope's as its parent, so
//! the publisher's spans and the consumer's are one trace. Without it the
//! envelope's `traceparent` is only carried along ([`super::envelope`]).

/// The current span's trace context as a `traceparent`, if it has a valid
/// OpenTelemetry one (a subscriber with tracing-opentelemetry's layer).
#[cfg(feature = "otel")]
pub(crate) fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Without `otel` there is no context to read.
#[cfg(not(feature = "otel"))]
pub(crate) fn current_traceparent() -> Option<String> {
    None
}

/// Make the trace context `traceparent()` gives the parent of `span`,
/// which must not have been entered yet. `traceparent` is called only when
/// the span goes to an OpenTelemetry layer, since reading it may cost a
/// pass over the entry; a missing or malformed one leaves the span where
/// it was.
#[cfg(feature = "otel")]
pub(crate) fn set_parent<'a>(span: &tracing::Span, traceparent: impl FnOnce() -> Option<&'a str>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if span.is_disabled() {
        return;
    }
    // Whether an OpenTelemetry layer sees the span, without reading the
    // envelope: the span has no parent span of its own (the consumer loop
    // runs in no span), so the context current now is the parent it has
    // already.
    if span.set_parent(opentelemetry::Context::current()).is_err() {
        return;
    }
    if let Some(sc) = traceparent().and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// A `traceparent` (`VERSION-TRACEID-SPANID-FLAGS`, lowercase hex) as the
/// remote span context it names; `None` if it is malformed or names no
/// trace. Versions after `00` may add fields after the flags.
#[cfg(feature = "otel")]
fn parse(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let known = version == "00" && parts.next().is_none();
    let later = lower_hex(version, 2) && version != "00" && version != "ff";
    if !(known || later) || !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) {
        return None;
    }
    if !lower_hex(flags, 2) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

#[cfg(all(test, feature = "otel"))]
mod tests {
    use super::parse;

    #[test]
    fn a_traceparent_parses_as_the_w3c_format_says() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse(tp).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        // A later version may add fields; `ff` is never valid.
        assert!(parse(&format!("01{}-extra", &tp[2..])).is_some());
        assert!(parse(&format!("ff{}", &tp[2..])).is_none());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
