//! Vulnerabilities, reports, diffs, the verdict cache and attribution (issue 6), on the
//! suite's real workloads under real ext4.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Scratch, assert_no_mounts_or_loops, brink, privileged, run, stderr};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Record and explore one mode of a workload of the suite; its folder (trace, results).
fn suite_mode(s: &Scratch, out: &str, workload: &str, mode: &str) -> PathBuf {
    let dir = s.path(out);
    let o = run(brink()
        .env("TMPDIR", s.tmpdir())
        .arg("suite")
        .arg(repo().join("workloads"))
        .arg(workload)
        .args(["--mode", mode, "-o"])
        .arg(&dir));
    assert!(o.status.success(), "suite {workload} {mode}: {}", stderr(&o));
    dir.join(workload).join(mode)
}

fn report_json(results: &Path) -> serde_json::Value {
    let o = run(brink().arg("report").arg("--json").arg(results));
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("report --json prints JSON")
}

fn vulns(j: &serde_json::Value) -> Vec<serde_json::Value> {
    j["vulnerabilities"].as_array().expect("vulnerabilities").clone()
}

#[test]
fn buggy_workloads_give_few_explained_stable_vulnerabilities() {
    if !privileged("buggy_workloads_give_few_explained_stable_vulnerabilities") {
        return;
    }
    let s = Scratch::new();
    let one = suite_mode(&s, "one", "atomic-replace-buggy", "data=ordered");
    let two = suite_mode(&s, "two", "atomic-replace-buggy", "data=ordered");
    let fixed = suite_mode(&s, "fixed", "atomic-replace-fixed", "data=ordered");

    // Every violating state in one vulnerability, explained by the rename in /.
    let j = report_json(&one.join("results"));
    let v = vulns(&j);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0]["states"], j["violations"], "every violating state is in it");
    assert_eq!(v[0]["kind"], "durability");
    let sentence = v[0]["sentence"].as_str().unwrap();
    assert!(sentence.starts_with("acknowledged 'config v"), "{sentence}");
    assert!(sentence.contains("the directory block of / (config.tmp→config"), "{sentence}");
    assert!(v[0]["repro"].as_str().unwrap().starts_with("brink replay "), "{v:#?}");

    // The same bug has the same id in another recording.
    let v2 = vulns(&report_json(&two.join("results")));
    assert_eq!(v2.iter().map(|v| v["id"].clone()).collect::<Vec<_>>(), vec![v[0]["id"].clone()]);

    // The minimal state still fails when replayed, under the workload's own checker.
    let minimal = v[0]["minimal"]["id"].as_str().unwrap();
    let dir = s.path("replay");
    let o = run(brink().arg("replay").arg(one.join("trace")).arg(minimal).arg("-o").arg(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    let check = Command::new(repo().join("checkers/atomic-replace/check.sh"))
        .current_dir(dir.join("mnt"))
        .env("BRINK_MARKS", dir.join("marks"))
        .output()
        .unwrap();
    brink_blockdev::unmount_path(&dir.join("mnt")).unwrap();
    assert_eq!(
        check.status.code(),
        Some(1),
        "the minimal state {minimal} fails: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("acknowledged 'config v"));

    // The fixed variant against the buggy one: fixed; the other way round: new, exit 1.
    let o = run(brink().arg("diff").arg(one.join("results")).arg(fixed.join("results")));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let id = v[0]["id"].as_str().unwrap();
    assert!(text.lines().any(|l| l.starts_with("fixed") && l.contains(id)), "{text}");
    assert!(text.contains("0 new, 1 fixed, 0 unchanged"), "{text}");
    let o = run(brink().arg("diff").arg("--json").arg(fixed.join("results")).arg(one.join("results")));
    assert_eq!(o.status.code(), Some(1), "a new vulnerability exits 1: {}", stderr(&o));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["added"][0]["id"], v[0]["id"]);

    // JUnit: one failing test case per vulnerability.
    let xml = s.path("junit.xml");
    let o = run(brink().arg("report").arg(one.join("results")).arg("--junit").arg(&xml));
    assert!(o.status.success(), "{}", stderr(&o));
    let xml = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(xml.matches("<testcase").count(), 1, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    // Vulnerabilities come first in the text report.
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("vulnerabilities: 1 (from "), "{text}");
    assert_no_mounts_or_loops(&s);
}

#[test]
fn stale_data_is_an_ordering_vulnerability_of_the_file_data() {
    if !privileged("stale_data_is_an_ordering_vulnerability_of_the_file_data") {
        return;
    }
    let s = Scratch::new();
    let m = suite_mode(&s, "o", "stale-data", "data=writeback,nodelalloc");
    let j = report_json(&m.join("results"));
    let v = vulns(&j);
    assert!(!v.is_empty() && v.len() <= 3, "a handful: {v:#?}");
    let total: u64 = v.iter().map(|v| v["states"].as_u64().unwrap()).sum();
    assert_eq!(total, j["violations"].as_u64().unwrap());
    assert_eq!(v[0]["kind"], "ordering", "{v:#?}");
    let sentence = v[0]["sentence"].as_str().unwrap();
    assert!(sentence.contains("the data of report.dat did not persist while the inode of report.dat"), "{sentence}");
    // Its minimal state drops one write: the data.
    assert_eq!(v[0]["minimal"]["writes"].as_array().unwrap().len(), 1, "{v:#?}");
}

#[test]
fn html_report_loads_in_headless_chromium() {
    if !privileged("html_report_loads_in_headless_chromium") {
        return;
    }
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| brink_blockdev::find_program(c).is_some()).unwrap_or_else(|| {
        panic!("html_report_loads_in_headless_chromium needs Debian's chromium (apt-get install chromium; CI installs it)")
    });
    let s = Scratch::new();
    let m = suite_mode(&s, "o", "atomic-replace-buggy", "data=ordered");
    let page = s.path("report.html");
    let o = run(brink().arg("report").arg(m.join("results")).arg("--html").arg(&page));
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["http://", "https://", "<script", "<link"] {
        assert!(!html.replace("http://www.w3.org/2000/svg", "").contains(external), "self-contained: found {external}");
    }
    let o = Command::new(chromium)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .env("HOME", s.tmpdir())
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium: {}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("<span id=\"vuln-count\">1</span>"), "the page shows the vulnerability count: {dom}");
    let err = stderr(&o);
    let console: Vec<&str> = err.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
}

#[test]
fn verdict_cache_reuses_verdicts_of_unchanged_states() {
    if !privileged("verdict_cache_reuses_verdicts_of_unchanged_states") {
        return;
    }
    let s = Scratch::new();
    let m = suite_mode(&s, "o", "atomic-replace-buggy", "data=ordered");
    let trace = m.join("trace");
    let checker_dir = s.path("checker");
    std::fs::create_dir(&checker_dir).unwrap();
    std::fs::copy(repo().join("checkers/atomic-replace/check.sh"), checker_dir.join("check.sh")).unwrap();
    let checker = checker_dir.join("check.sh").display().to_string();
    let cache = s.path("cache");
    let explore = |out: &str| {
        let o = run(brink()
            .arg("explore")
            .arg(&trace)
            .args(["--checker", &checker, "--json", "--cache"])
            .arg(&cache)
            .arg("-o")
            .arg(s.path(out)));
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let first = explore("r1");
    assert_eq!(first["cache_hits"], 0);
    assert!(first["cache_stored"].as_u64().unwrap() >= first["states_unique"].as_u64().unwrap());
    let second = explore("r2");
    assert_eq!(second["cache_stored"], 0, "{second}");
    assert_eq!(second["cache_hits"], first["cache_stored"], "every verdict reused: {second}");
    // What depends on scheduling aside: each check's time and which state of equal
    // recovered trees ran the checkers.
    let strip = |out: &str| crate::explore::without_times(crate::explore::records(&s, out));
    assert_eq!(strip("r1"), strip("r2"), "the same verdicts");
    // A changed checker (a file beside it changed) is another checker: nothing reused.
    std::fs::write(checker_dir.join("helper.txt"), "changed").unwrap();
    let third = explore("r3");
    assert_eq!(third["cache_hits"], 0, "{third}");
}

#[test]
fn show_files_attributes_ext4_writes() {
    if !privileged("show_files_attributes_ext4_writes") {
        return;
    }
    let s = Scratch::new();
    let m = suite_mode(&s, "o", "atomic-replace-buggy", "data=ordered");
    let o = run(brink().arg("show").arg("--files").arg("--json").arg(m.join("trace")));
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["covered"], true);
    let file = |p: &str| {
        j["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("no {p}: {j:#}"))
    };
    // Three versions of 512 lines of config, written as config.tmp.
    assert!(file("config.tmp")["kinds"]["data"].as_u64().unwrap() >= 3 * 16384, "{j:#}");
    assert!(file("/")["kinds"]["journal directory block"].as_u64().unwrap() > 0, "{j:#}");
    // Every write is attributed to something the reader knows.
    for w in j["writes"].as_array().unwrap() {
        for it in w["items"].as_array().unwrap() {
            assert_ne!(it["kind"], "unknown", "{w}");
        }
    }
    let o = run(brink().arg("show").arg("--files").arg(m.join("trace")));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("the journal copy of the directory block of / (config.tmp→config"), "{text}");
}
