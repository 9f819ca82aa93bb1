//! Renderings of an analysis for people (text, one HTML page) and CI systems (JUnit XML).

use std::fmt::Write as _;

use brink_check::Verdict;

use brink_explore::results::TraceInfo;

use crate::{Analysis, Diff, Vulnerability};

/// The vulnerabilities, for a terminal.
/// What the file system's own findings are, where a report lists them apart.
const FS_FINDINGS: &str =
    "fsck found the file system inconsistent, or only its own metadata is at stake: not the application's bug";

/// The application's vulnerabilities, then the file system's own findings: every report
/// lists them in that order, the second under their own label.
fn owned(a: &Analysis) -> (Vec<&Vulnerability>, Vec<&Vulnerability>) {
    a.vulnerabilities.iter().partition(|v| v.owner == crate::Owner::Application)
}

pub fn text(a: &Analysis) -> String {
    let mut out = String::new();
    let failing: u64 = a.vulnerabilities.iter().map(|v| v.states).sum();
    let w = &mut out;
    if a.logical.is_none() && !a.summary.level.is_block() {
        let violating = a.states.iter().filter(|s| s.verdict == Verdict::Violation).count();
        let _ = writeln!(w, "vulnerabilities: not grouped ({violating} violating states, listed below)");
        return out;
    }
    let _ = writeln!(w, "vulnerabilities: {} (from {failing} violating states)", a.vulnerabilities.len());
    // The application's first; the file system's own findings after, under their label.
    let (app, fs): (Vec<&Vulnerability>, Vec<&Vulnerability>) =
        a.vulnerabilities.iter().partition(|v| v.owner == crate::Owner::Application);
    for (i, v) in app.iter().chain(&fs).enumerate() {
        if i == app.len() {
            let _ = writeln!(
                w,
                "\n  the file system's own findings (fsck, or only its metadata at stake), not the application's:"
            );
        }
        let _ = writeln!(
            w,
            "\n  {}  {:<10}  {} state{}",
            v.id,
            v.kind.name(),
            v.states,
            if v.states == 1 { "" } else { "s" }
        );
        let _ = writeln!(w, "    {}", v.sentence);
        if let Some(form) = &v.alice {
            let _ = writeln!(w, "    ALICE: {form}");
        }
        let _ = writeln!(w, "    minimal state {}: {}", v.minimal.id, minimal_words(v));
        if !v.repro.is_empty() {
            let _ = writeln!(w, "    reproduce: {}", v.repro);
        }
    }
    for n in &a.notes {
        let _ = writeln!(w, "  note: {n}");
    }
    out
}

fn minimal_words(v: &Vulnerability) -> String {
    if let Some(f) = &v.minimal.fault {
        return f.clone();
    }
    let logical = v.minimal.id.starts_with('L');
    if logical {
        let lost: Vec<String> =
            v.minimal.writes.iter().map(|w| format!("{} op {}: {}", w.what, w.index, w.holds.join("; "))).collect();
        let after = format!("a crash after op {}", v.minimal.position.saturating_sub(1));
        return if lost.is_empty() {
            format!("{after}, every earlier op persisted")
        } else {
            format!("{after}; {}", lost.join(", "))
        };
    }
    if v.minimal.writes.is_empty() {
        return format!("a crash before event {}, every earlier write persisted", v.minimal.position);
    }
    let ws: Vec<String> = v
        .minimal
        .writes
        .iter()
        .map(|w| {
            if w.holds.is_empty() {
                format!("{} write {}", w.what, w.index)
            } else {
                format!("{} write {} ({})", w.what, w.index, w.holds.join("; "))
            }
        })
        .collect();
    format!("crash before event {}; {}", v.minimal.position, ws.join(", "))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// One JUnit test case per vulnerability (all failing); one passing case if there is none.
pub fn junit(a: &Analysis) -> String {
    let n = a.vulnerabilities.len();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<testsuites name=\"brink\" tests=\"{}\" failures=\"{n}\">", n.max(1));
    let _ = writeln!(x, "  <testsuite name=\"brink {}\" tests=\"{}\" failures=\"{n}\">", esc(&a.results), n.max(1));
    for v in &a.vulnerabilities {
        let owner = if v.owner == crate::Owner::FileSystem { "filesystem." } else { "" };
        let _ = writeln!(
            x,
            "    <testcase classname=\"brink.{owner}{}\" name=\"{} {}\">",
            v.kind.name(),
            v.id,
            esc(&v.class)
        );
        let _ = writeln!(
            x,
            "      <failure message=\"{}\" type=\"{}\">{} states; minimal state {}: {}\nreproduce: {}</failure>",
            esc(&v.sentence),
            v.kind.name(),
            v.states,
            esc(&v.minimal.id),
            esc(&minimal_words(v)),
            esc(&v.repro)
        );
        let _ = writeln!(x, "    </testcase>");
    }
    if n == 0 {
        let _ = writeln!(x, "    <testcase classname=\"brink\" name=\"no vulnerabilities\"/>");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn verdict_colour(v: &Verdict) -> &'static str {
    match v {
        Verdict::Consistent => "#2e7d32",
        Verdict::CheckerFailure => "#ef6c00",
        Verdict::Violation => "#c62828",
    }
}

/// The trace over time as an SVG: epochs as bands, writes as ticks, flushes as lines,
/// marks as labelled diamonds, crash positions as dots coloured by their worst verdict.
fn timeline(a: &Analysis) -> String {
    let Some(info) = &a.info else {
        return "<p>(no trace.json: the picture needs a results directory of this brink)</p>".into();
    };
    let ev = info.events.as_bytes();
    let n = ev.len().max(1) as f64;
    let (w, h, left, right) = (1100.0, 170.0, 20.0, 20.0);
    let x = |i: f64| left + i * (w - left - right) / n;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"trace timeline\">"
    );
    epoch_bands(&mut s, ev, &x);
    event_ticks(&mut s, ev, &x);
    marks_and_positions(&mut s, a, info, &x);
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"150\" font-size=\"11\" fill=\"#333\">event 0</text><text x=\"{:.1}\" y=\"150\" font-size=\"11\" fill=\"#333\" text-anchor=\"end\">event {}</text>",
        w - right,
        ev.len()
    );
    legend(&mut s);
    s.push_str("</svg>");
    s
}

/// Epochs (the events up to and including each flush) as alternating bands.
fn epoch_bands(s: &mut String, ev: &[u8], x: &dyn Fn(f64) -> f64) {
    let mut start = 0usize;
    let mut band = 0;
    for (i, &k) in ev.iter().enumerate().chain(std::iter::once((ev.len(), &b'f'))) {
        if k == b'f' {
            let fill = if band % 2 == 0 { "#f4f6f8" } else { "#e8ecf0" };
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"20\" width=\"{:.1}\" height=\"110\" fill=\"{fill}\"><title>epoch {band}: events {start}–{i}</title></rect>",
                x(start as f64),
                (x(i as f64 + 1.0) - x(start as f64)).max(0.5)
            );
            band += 1;
            start = i + 1;
        }
    }
}

/// Writes as ticks, flushes as lines, injected errors as crosses.
fn event_ticks(s: &mut String, ev: &[u8], x: &dyn Fn(f64) -> f64) {
    for (i, &k) in ev.iter().enumerate() {
        let xi = x(i as f64 + 0.5);
        match k {
            b'w' => {
                let _ = write!(
                    s,
                    "<line x1=\"{xi:.1}\" y1=\"95\" x2=\"{xi:.1}\" y2=\"125\" stroke=\"#607d8b\" stroke-width=\"1.5\"><title>event {i}: write</title></line>"
                );
            }
            b'f' => {
                let _ = write!(
                    s,
                    "<line x1=\"{xi:.1}\" y1=\"20\" x2=\"{xi:.1}\" y2=\"130\" stroke=\"#1565c0\" stroke-width=\"1\"><title>event {i}: flush</title></line>"
                );
            }
            b'e' => {
                let _ = write!(
                    s,
                    "<text x=\"{xi:.1}\" y=\"92\" font-size=\"12\" fill=\"#c62828\" text-anchor=\"middle\">✕<title>event {i}: injected error</title></text>"
                );
            }
            _ => {}
        }
    }
}

/// Marks as labelled diamonds, crash positions as dots coloured by their worst verdict.
fn marks_and_positions(s: &mut String, a: &Analysis, info: &TraceInfo, x: &dyn Fn(f64) -> f64) {
    for m in &info.marks {
        let xi = x(m.index as f64 + 0.5);
        let _ = write!(
            s,
            "<path d=\"M{xi:.1} 30 l5 6 l-5 6 l-5 -6 z\" fill=\"#6a1b9a\"><title>event {}: mark {}</title></path><text x=\"{:.1}\" y=\"16\" font-size=\"10\" fill=\"#6a1b9a\" text-anchor=\"middle\">{}</text>",
            m.index,
            esc(&m.text),
            xi,
            esc(&m.text)
        );
    }
    for (p, (v, count)) in &a.positions {
        let xi = x(*p as f64);
        let _ = write!(
            s,
            "<circle cx=\"{xi:.1}\" cy=\"70\" r=\"5\" fill=\"{}\"><title>crash before event {p}: {count} state(s), worst {}</title></circle>",
            verdict_colour(v),
            v.in_words()
        );
    }
}

/// What the dots' colours mean.
fn legend(s: &mut String) {
    let legend = [("#2e7d32", "consistent"), ("#ef6c00", "checker failure"), ("#c62828", "violation")];
    for (k, (c, l)) in legend.iter().enumerate() {
        let lx = 300.0 + k as f64 * 150.0;
        let _ = write!(
            s,
            "<circle cx=\"{lx}\" cy=\"160\" r=\"5\" fill=\"{c}\"/><text x=\"{}\" y=\"164\" font-size=\"11\">{l}</text>",
            lx + 9.0
        );
    }
}

/// The page's head and style, shared by a run's page and the model matrix's.
fn page_head(trace: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>brink report: {}</title><style>\
body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}}\
h1{{font-size:1.6em;margin-bottom:.2em}} .sub{{color:#666}} table{{border-collapse:collapse;margin:.6em 0}}\
td,th{{border:1px solid #ccd;padding:.25em .6em;text-align:left}} th{{background:#eef}}\
.vuln{{border-left:5px solid #c62828;padding:.4em 1em;margin:1em 0;background:#fff7f7}}\
.vuln h3{{margin:.2em 0}} code{{background:#f0f0f0;padding:.1em .3em}} .kind{{text-transform:uppercase;font-size:.8em;color:#fff;background:#c62828;padding:.1em .4em;border-radius:3px}}\
.ok{{border-left-color:#2e7d32;background:#f5fbf5}}</style></head><body>\n",
        esc(trace)
    );
    h
}

/// One self-contained page: no scripts, no external assets.
pub fn html(a: &Analysis) -> String {
    let sum = &a.summary;
    let mut h = page_head(&a.trace);
    let _ = writeln!(
        h,
        "<h1>brink report</h1><p class=\"sub\">results <code>{}</code> · trace <code>{}</code></p>",
        esc(&a.results),
        esc(&a.trace)
    );
    let _ = writeln!(
        h,
        "<h2><span id=\"vuln-count\">{}</span> vulnerabilit{}</h2>",
        a.vulnerabilities.len(),
        if a.vulnerabilities.len() == 1 { "y" } else { "ies" }
    );
    let _ = writeln!(
        h,
        "<table><tr><th>file system</th><th>model</th><th>strategy</th><th>states</th><th>unique</th><th>violations</th><th>checker failures</th><th>consistent</th><th>wall</th></tr>"
    );
    let _ = writeln!(
        h,
        "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}s</td></tr></table>",
        esc(&sum.fs),
        esc(&sum.mount_opts),
        esc(&sum.model),
        esc(&sum.strategy),
        sum.states_generated,
        sum.states_unique,
        sum.violations,
        sum.checker_failures,
        sum.consistent,
        sum.wall_s
    );
    let _ = writeln!(h, "<h2>The trace over time</h2>{}", timeline(a));
    let _ = writeln!(h, "<h2>Vulnerabilities</h2>");
    if a.vulnerabilities.is_empty() {
        let _ = writeln!(h, "<div class=\"vuln ok\">No violating state.</div>");
    }
    let (app, fs) = owned(a);
    for v in app {
        vulnerability_html(&mut h, v);
    }
    if !fs.is_empty() {
        let _ = writeln!(h, "<h2>The file system's own findings</h2><p class=\"sub\">{FS_FINDINGS}</p>");
    }
    for v in fs {
        vulnerability_html(&mut h, v);
    }
    for n in &a.notes {
        let _ = writeln!(h, "<p class=\"sub\">note: {}</p>", esc(n));
    }
    h.push_str("</body></html>\n");
    h
}

/// One vulnerability's box.
fn vulnerability_html(h: &mut String, v: &Vulnerability) {
    let _ = writeln!(
        h,
        "<div class=\"vuln\" id=\"{}\"><h3>{} <span class=\"kind\">{}</span> · {} state{}</h3><p>{}</p>",
        v.id,
        v.id,
        v.kind.name(),
        v.states,
        if v.states == 1 { "" } else { "s" },
        esc(&v.sentence)
    );
    if let Some(form) = &v.alice {
        let _ = writeln!(h, "<p>ALICE: {}</p>", esc(form));
    }
    let _ = writeln!(h, "<p>Minimal state <code>{}</code>: {}</p>", esc(&v.minimal.id), esc(&minimal_words(v)));
    if !v.marks_broken.is_empty() {
        let _ = writeln!(
            h,
            "<p>Acknowledged marks broken: {}</p>",
            v.marks_broken.iter().map(|m| format!("<code>{}</code>", esc(m))).collect::<Vec<_>>().join(" ")
        );
    }
    let _ = writeln!(
        h,
        "<p>Signature: {}</p>{}<p class=\"sub\">States: {}{}</p></div>",
        esc(&v.signature.join("; ")),
        if v.repro.is_empty() { String::new() } else { format!("<p>Reproduce: <code>{}</code></p>", esc(&v.repro)) },
        esc(&v.state_ids.join(" ")),
        if v.states as usize > v.state_ids.len() { " …" } else { "" }
    );
}

/// The regression report of `brink diff`.
pub fn diff_text(d: &Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "old {}\nnew {}\n", d.old, d.new);
    let _ = writeln!(out, "{:<10} {:<10} {:<11} {:>7}  vulnerability", "status", "id", "kind", "states");
    for (status, vs) in [("new", &d.added), ("fixed", &d.fixed), ("unchanged", &d.unchanged)] {
        for v in vs {
            let _ = writeln!(out, "{:<10} {:<10} {:<11} {:>7}  {}", status, v.id, v.kind.name(), v.states, v.sentence);
        }
    }
    let _ = writeln!(out, "\n{} new, {} fixed, {} unchanged", d.added.len(), d.fixed.len(), d.unchanged.len());
    out
}

/// The model matrix as one self-contained page.
pub fn matrix_html(m: &crate::Matrix) -> String {
    let mut h = page_head(&m.trace);
    let _ = writeln!(h, "<h1>brink model matrix</h1><p class=\"sub\">trace <code>{}</code></p>", esc(&m.trace));
    let _ = write!(h, "<table><tr><th>vulnerability</th><th>kind</th>");
    for c in &m.columns {
        let title = if c.complete { esc(&c.results) } else { format!("{} (incomplete)", esc(&c.results)) };
        let _ = write!(h, "<th title=\"{title}\">{}</th>", esc(&c.model));
    }
    let _ = writeln!(h, "</tr>");
    for r in &m.rows {
        let _ = write!(h, "<tr><td><a href=\"#{0}\">{0}</a></td><td>{1}</td>", r.id, r.kind.name());
        for n in &r.states {
            let _ = write!(h, "<td>{}</td>", if *n == 0 { "–".to_string() } else { n.to_string() });
        }
        let _ = writeln!(h, "</tr>");
    }
    let _ = writeln!(h, "</table><p class=\"sub\">violating states per run; – : not found there</p>");
    for r in &m.rows {
        let (id, kind) = (&r.id, r.kind.name());
        let _ = writeln!(
            h,
            "<div class=\"vuln\" id=\"{id}\"><h3>{id} <span class=\"kind\">{kind}</span></h3><p>{}</p>",
            esc(&r.sentence)
        );
        if let Some(a) = &r.alice {
            let _ = writeln!(h, "<p>ALICE: {}</p>", esc(a));
        }
        let _ = writeln!(h, "<p>{}</p></div>", esc(&r.exposure));
    }
    h.push_str("</body></html>\n");
    h
}
