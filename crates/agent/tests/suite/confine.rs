//! `codex-orchestrator-agent confine` on this machine's kernel (Landlock): the program it
//! becomes cannot read, write or run anything in a hidden directory, nor signal a process
//! outside its domain, while everything else stays reachable.

use std::process::Command;

#[test]
fn a_confined_program_cannot_reach_the_hidden_directory_or_signal_outside() {
    let abi = codex_orchestrator_agent::confine::probe();
    assert!(
        abi >= 6,
        "this machine's kernel has Landlock ABI {abi}; the tests need 6 or later"
    );
    let t = tempfile::tempdir().unwrap();
    let (secret, open) = (t.path().join("secret"), t.path().join("open"));
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::create_dir_all(&open).unwrap();
    std::fs::write(secret.join("f"), "s").unwrap();
    std::fs::write(secret.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::write(open.join("f"), "o").unwrap();
    // A process outside the domain to signal: a sleeping child of the test.
    let mut outside = Command::new("sleep").arg("30").spawn().unwrap();
    let script = format!(
        "cat {s}/f >/dev/null 2>&1; echo read=$?; \
         echo x > {s}/new 2>/dev/null; echo write=$?; \
         sh {s}/run.sh >/dev/null 2>&1; echo run=$?; \
         cat {o}/f; echo; echo open=$?; \
         echo y > {o}/new; echo open_write=$?; \
         ls /usr >/dev/null; echo usr=$?; \
         kill -TERM {pid} 2>/dev/null; echo kill=$?",
        s = secret.display(),
        o = open.display(),
        pid = outside.id()
    );
    let out = Command::new(codex_orchestrator_testkit::bins::agent())
        .arg("confine")
        .arg("--hide")
        .arg(&secret)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    let _ = outside.kill();
    let _ = outside.wait();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "read=1\nwrite=2\nrun=2\no\nopen=0\nopen_write=0\nusr=0\nkill=1\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!secret.join("new").exists());
    assert_eq!(std::fs::read_to_string(open.join("new")).unwrap(), "y\n");
}

#[test]
fn confine_without_a_program_or_a_hidden_directory_is_refused() {
    let out = Command::new(codex_orchestrator_testkit::bins::agent())
        .args(["confine", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--hide <DIR>"), "{err}");
}
