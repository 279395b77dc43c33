//! Authorization decisions with 1,000 bindings (DESIGN.md §12; target ≤ 1 µs):
//!
//! - `authz/decide_proto`: `Authorizer::decide` of `AdminService/CreateExecution` with its
//!   protobuf request (decode with prost-reflect, read project and domain, the index lookup).
//! - `authz/decide_denied`: the same call for a project the caller has no role on.
//! - `authz/may_view_project`: the index lookup alone (what `ListProjects` filters with).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flyteauth::testing::{Authorizer, RequestBody};
use flyteauth_micro_bench::authz;

fn bench_authz(c: &mut Criterion) {
    let a: Authorizer = authz::authorizer(1000);
    let user = authz::user(&["team-17", "team-500", "everyone"]);
    let ok = authz::create_execution("p-500", "development");
    let other = authz::create_execution("p-900", "development");
    assert!(a.decide(&user, authz::CREATE_EXECUTION, RequestBody::Proto(&ok)).is_allow());
    assert!(!a.decide(&user, authz::CREATE_EXECUTION, RequestBody::Proto(&other)).is_allow());

    let mut g = c.benchmark_group("authz");
    g.bench_function("decide_proto", |b| {
        b.iter(|| a.decide(black_box(&user), authz::CREATE_EXECUTION, RequestBody::Proto(black_box(&ok))))
    });
    g.bench_function("decide_denied", |b| {
        b.iter(|| a.decide(black_box(&user), authz::CREATE_EXECUTION, RequestBody::Proto(black_box(&other))))
    });
    g.bench_function("may_view_project", |b| {
        b.iter(|| a.may_view_project(black_box(&user), black_box("p-500")))
    });
    g.finish();
}

criterion_group!(benches, bench_authz);
criterion_main!(benches);
