//! Each exit rule of `Horde.ProcessesSupervisor`, from terms.

use super::*;
use crate::term::{atom, int, list, tuple};

fn pid(n: u32) -> Pid {
    Pid::new("a@127.0.0.1", n, 0, 1)
}

fn spec(id: i64, restart: &str) -> ChildSpec {
    ChildSpec::new(
        int(id),
        "Elixir.W",
        "start_link",
        vec![int(id)],
        [("restart", atom(restart))],
    )
}

fn with_child(restart: &str) -> Children {
    let mut c = Children::new(ChildrenOptions::default());
    let child = c.prepare_start(&spec(1, restart)).unwrap();
    c.started(child, pid(10));
    c
}

fn shutdown(why: &str) -> Term {
    tuple(vec![atom("shutdown"), atom(why)])
}

#[test]
fn permanent_children_restart_whatever_the_reason() {
    for reason in [
        atom("normal"),
        atom("shutdown"),
        shutdown("x"),
        atom("boom"),
    ] {
        let mut c = with_child("permanent");
        let e = c.exited(&pid(10), &reason, 0);
        assert!(
            matches!(&e[..], [ChildEffect::Restart { old, args, .. }]
            if old == &pid(10) && args == &vec![int(1)]),
            "{reason}: {e:?}"
        );
        let e = c.restart_result(&pid(10), &tuple(vec![atom("ok"), Term::Pid(pid(11))]));
        assert_eq!(
            e,
            vec![ChildEffect::Notify(tuple(vec![
                atom("update_child_pid"),
                int(1),
                Term::Pid(pid(11))
            ]))]
        );
        assert_eq!(c.pid_of(&int(1)), Some(&pid(11)));
    }
}

#[test]
fn transient_children_restart_only_after_a_failure() {
    for (reason, restarts) in [
        (atom("normal"), false),
        (atom("shutdown"), false),
        (shutdown("bye"), false),
        (atom("boom"), true),
        (tuple(vec![atom("error"), atom("x")]), true),
    ] {
        let mut c = with_child("transient");
        let e = c.exited(&pid(10), &reason, 0);
        if restarts {
            assert!(matches!(&e[..], [ChildEffect::Restart { .. }]), "{reason}");
        } else {
            assert_eq!(
                e,
                vec![ChildEffect::Notify(tuple(vec![
                    atom("disown_child_process"),
                    int(1)
                ]))]
            );
            assert!(c.is_empty());
        }
    }
}

#[test]
fn temporary_children_are_disowned_on_any_exit() {
    for reason in [atom("normal"), atom("boom")] {
        let mut c = with_child("temporary");
        assert_eq!(
            c.exited(&pid(10), &reason, 0),
            vec![ChildEffect::Notify(tuple(vec![
                atom("disown_child_process"),
                int(1)
            ]))]
        );
    }
}

#[test]
fn a_redistribution_exit_relinquishes_the_child_whatever_its_restart_type() {
    for restart in ["permanent", "transient", "temporary"] {
        let mut c = with_child(restart);
        assert_eq!(
            c.exited(&pid(10), &shutdown("process_redistribution"), 0),
            vec![ChildEffect::Notify(tuple(vec![
                atom("relinquish_child_process"),
                int(1)
            ]))]
        );
        assert!(c.is_empty());
    }
}

#[test]
fn more_than_max_restarts_within_max_seconds_stop_the_supervisor() {
    let mut c = with_child("permanent");
    let mut p = 10;
    for t in [0, 1, 2] {
        let e = c.exited(&pid(p), &atom("boom"), t);
        assert!(matches!(&e[..], [ChildEffect::Restart { .. }]));
        c.restart_result(&pid(p), &tuple(vec![atom("ok"), Term::Pid(pid(p + 1))]));
        p += 1;
    }
    // A fourth within 5 s of the first: 4 > 3.
    assert_eq!(
        c.exited(&pid(p), &atom("boom"), 4),
        vec![ChildEffect::Shutdown]
    );
    // Spread out, the window forgets old restarts.
    let mut c = with_child("permanent");
    for (p, t) in (10..).zip([0, 6, 12, 18, 24]) {
        let e = c.exited(&pid(p), &atom("boom"), t);
        assert!(matches!(&e[..], [ChildEffect::Restart { .. }]), "at {t}");
        c.restart_result(&pid(p), &tuple(vec![atom("ok"), Term::Pid(pid(p + 1))]));
    }
}

#[test]
fn a_failed_restart_is_retried_and_an_ignored_one_disowned() {
    let mut c = with_child("permanent");
    c.exited(&pid(10), &atom("boom"), 0);
    let e = c.restart_result(&pid(10), &tuple(vec![atom("error"), atom("nope")]));
    assert_eq!(e, vec![ChildEffect::RetryRestart(pid(10))]);
    let count = c.count_children();
    assert_eq!(
        count,
        list(vec![
            tuple(vec![atom("specs"), int(1)]),
            tuple(vec![atom("active"), int(0)]),
            tuple(vec![atom("supervisors"), int(0)]),
            tuple(vec![atom("workers"), int(1)]),
        ])
    );
    assert!(matches!(
        &c.retry(&pid(10), 1)[..],
        [ChildEffect::Restart { .. }]
    ));
    assert_eq!(
        c.restart_result(&pid(10), &atom("ignore")),
        vec![ChildEffect::Notify(tuple(vec![
            atom("disown_child_process"),
            int(1)
        ]))]
    );
    assert!(c.is_empty());
}

#[test]
fn unknown_pids_and_limits() {
    let mut c = with_child("permanent");
    assert!(c.exited(&pid(99), &atom("boom"), 0).is_empty());
    assert!(c.terminate(&pid(99)).is_none());
    assert_eq!(c.terminate_by_id(&int(1)).map(|(p, _)| p), Some(pid(10)));
    assert!(c.is_empty());
    let mut limited = Children::new(ChildrenOptions {
        max_children: Some(1),
        extra_arguments: vec![atom("extra")],
        ..Default::default()
    });
    let child = limited.prepare_start(&spec(1, "permanent")).unwrap();
    assert_eq!(limited.start_args(&child), vec![atom("extra"), int(1)]);
    limited.started(child, pid(1));
    assert_eq!(
        limited.prepare_start(&spec(2, "permanent")),
        Err(atom("max_children"))
    );
}

#[test]
fn graceful_shutdown_relinquishes_each_stopped_child() {
    let mut c = with_child("temporary");
    assert_eq!(c.all().len(), 1);
    assert_eq!(
        c.stopped_on_shutdown(&pid(10)),
        vec![ChildEffect::Notify(tuple(vec![
            atom("relinquish_child_process"),
            int(1)
        ]))]
    );
    assert!(c.stopped_on_shutdown(&pid(10)).is_empty());
}

#[test]
fn past_the_restart_intensity_the_rest_are_relinquished_and_none_restarts() {
    let mut c = Children::new(ChildrenOptions {
        max_restarts: 0,
        ..Default::default()
    });
    for (i, p) in [(1, 10), (2, 20), (3, 30)] {
        let child = c.prepare_start(&spec(i, "permanent")).unwrap();
        c.started(child, pid(p));
    }
    assert_eq!(
        c.exited(&pid(10), &atom("boom"), 0),
        vec![ChildEffect::Shutdown]
    );
    assert!(c.is_stopping());
    assert!(
        !c.contains(&pid(10)),
        "the child that broke the limit is dropped"
    );
    // The others, stopped by the member, are given up to the cluster,
    // whatever their exit: none restarts, none is disowned.
    assert_eq!(
        c.exited(&pid(20), &atom("shutdown"), 0),
        vec![ChildEffect::Notify(tuple(vec![
            atom("relinquish_child_process"),
            int(2)
        ]))]
    );
    assert_eq!(
        c.exited(&pid(30), &atom("killed"), 0),
        vec![ChildEffect::Notify(tuple(vec![
            atom("relinquish_child_process"),
            int(3)
        ]))]
    );
    assert!(c.is_empty());
}
