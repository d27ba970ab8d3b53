use super::{errcode, ips, token};
use crate::token::plan::{Call, FetchPlan, Next};
use crate::token::wechat_api::ApiFailure;

#[test]
fn without_a_token_the_plan_starts_with_one_then_fetches_the_list() {
    let (mut p, first) = FetchPlan::start(2, false, true);
    assert_eq!(
        first,
        Call::Token {
            upstream: 0,
            force: false
        }
    );
    assert_eq!(
        p.after_token(first, &Ok(token(7200))),
        Next::Call(Call::List { upstream: 0 })
    );
    assert_eq!(
        p.after_list(Call::List { upstream: 0 }, Ok(ips())),
        Next::Done(ips())
    );
}

#[test]
fn with_a_usable_token_the_plan_goes_straight_to_the_list() {
    let (_, first) = FetchPlan::start(1, true, true);
    assert_eq!(first, Call::List { upstream: 0 });
}

#[test]
fn a_transport_failure_fails_over_to_the_next_upstream() {
    let (mut p, first) = FetchPlan::start(2, false, true);
    assert_eq!(
        p.after_token(first, &Err(ApiFailure::Transport)),
        Next::Call(Call::Token {
            upstream: 1,
            force: false
        })
    );
    assert_eq!(p.upstream(), 1);
    let list = Call::List { upstream: 1 };
    assert_eq!(
        p.after_token(
            Call::Token {
                upstream: 1,
                force: false
            },
            &Ok(token(7200))
        ),
        Next::Call(list)
    );
    assert_eq!(
        p.after_list(list, Err(ApiFailure::Status(502))),
        Next::GaveUp(ApiFailure::Status(502))
    );
}

#[test]
fn a_list_failure_fails_over_keeping_the_token() {
    let (mut p, first) = FetchPlan::start(2, true, true);
    assert_eq!(
        p.after_list(first, Err(ApiFailure::BadReply)),
        Next::Call(Call::List { upstream: 1 })
    );
    assert!(!p.drop_token);
}

#[test]
fn busy_is_retried_once_on_the_same_upstream() {
    let (mut p, first) = FetchPlan::start(1, true, true);
    assert_eq!(p.after_list(first, Err(errcode(-1))), Next::Call(first));
    assert_eq!(
        p.after_list(first, Err(errcode(-1))),
        Next::GaveUp(errcode(-1))
    );
}

#[test]
fn a_refused_token_is_dropped_and_renewed_once_with_force_refresh_if_allowed() {
    for (allowed, force) in [(true, true), (false, false)] {
        let (mut p, first) = FetchPlan::start(1, true, allowed);
        assert_eq!(
            p.after_list(first, Err(errcode(40001))),
            Next::Call(Call::Token { upstream: 0, force })
        );
        assert!(p.drop_token);
        let t = Call::Token { upstream: 0, force };
        assert_eq!(
            p.after_token(t, &Ok(token(7200))),
            Next::Call(Call::List { upstream: 0 })
        );
        assert_eq!(p.forced, force);
        assert!(!p.drop_token);
        // Refused again: no endless loop.
        assert_eq!(
            p.after_list(first, Err(errcode(42001))),
            Next::GaveUp(errcode(42001))
        );
        assert!(p.drop_token);
    }
}

#[test]
fn operator_errors_fail_over_then_give_up_with_the_errcode() {
    let (mut p, first) = FetchPlan::start(2, false, true);
    assert_eq!(
        p.after_token(first, &Err(errcode(40164))),
        Next::Call(Call::Token {
            upstream: 1,
            force: false
        })
    );
    assert_eq!(
        p.after_token(
            Call::Token {
                upstream: 1,
                force: false
            },
            &Err(errcode(40164))
        ),
        Next::GaveUp(errcode(40164))
    );
}

#[test]
fn no_upstreams_is_treated_as_one() {
    let (mut p, first) = FetchPlan::start(0, false, false);
    assert_eq!(
        p.after_token(first, &Err(ApiFailure::Transport)),
        Next::GaveUp(ApiFailure::Transport)
    );
}
