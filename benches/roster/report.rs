//! BENCHMARKS.md from the results, every figure beside its target.

use serde_json::Value;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// "met" or "missed" for a figure against its target.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

pub fn markdown(r: &Value) -> String {
    let mut out = String::from(
        "# Benchmarks\n\nWritten by `make bench` (benches/roster/) on this machine; every ratio compares figures of the same run, and Roster, the API server and etcd share its cores.\n\n",
    );
    out += &format!(
        "Machine: {} cores. Whole run: {} s.\n\n",
        r["machine"]["cores"], r["bench_wall_s"]
    );
    if let Some(levels) = r["ingest"].as_array() {
        ingest(&mut out, levels);
    }
    if let Some(large) = r["large_groups"].as_array() {
        out += "## Large groups: PATCH adding 256 members (target: the same latency at every size)\n\n| group size | p50 ms | p99 ms |\n|---|---|---|\n";
        for g in large {
            out += &format!(
                "| {} | {} | {} |\n",
                g["group_size"], g["p50_ms"], g["p99_ms"]
            );
        }
        out += "\n";
    }
    if r["saml_acs"].is_object() {
        saml(&mut out, &r["saml_acs"]);
    }
    if r["gate"].is_object() {
        gate(&mut out, &r["gate"]);
    }
    if r["propagation"].is_object() {
        propagation(&mut out, &r["propagation"]);
    }
    if r["resync"].is_object() {
        resync(&mut out, &r["resync"]);
    }
    if r["access"].is_object() {
        access(&mut out, &r["access"]);
    }
    if r["postgres"].is_object() {
        postgres(&mut out, &r["postgres"]);
    }
    if r["memory"].is_object() {
        memory(&mut out, &r["memory"]);
    }
    if let Some(rss) = r["roster_rss_mib_after_scim_sections"].as_f64() {
        out += &format!(
            "Roster RSS after the SCIM and SAML sections (the ingest process): {rss} MiB.\n"
        );
    }
    out
}

fn ingest(out: &mut String, levels: &[Value]) {
    let first = &levels[0];
    *out += &format!(
        "## SCIM ingest against a plain kube client (same objects, same concurrency)\n\nMedians of {} runs per concurrency, {} users and {} groups per run. A SCIM POST makes two API writes (the userName claim, the User) and an audit Event where the baseline makes one write: that is its floor.\n\n",
        first["runs"], first["users_per_run"], first["groups_per_run"]
    );
    *out += "| concurrency | SCIM users/s | baseline users/s | ratio (target ≥ 0.8) | SCIM p99 ms | baseline p99 ms | p99 ratio (target ≤ 2) | SCIM PATCH +256/s | baseline/s |\n|---|---|---|---|---|---|---|---|---|\n";
    for level in levels {
        let m = &level["median"];
        *out += &format!(
            "| {} | {} | {} | {:.2} ({}) | {} | {} | {:.2} ({}) | {} | {} |\n",
            level["concurrency"],
            m["scim_users_per_s"],
            m["baseline_users_per_s"],
            num(&m["throughput_ratio"]),
            verdict(num(&m["throughput_ratio"]) >= 0.8),
            m["scim_p99_ms"],
            m["baseline_p99_ms"],
            num(&m["p99_ratio"]),
            verdict(num(&m["p99_ratio"]) <= 2.0),
            m["scim_patches_per_s"],
            m["baseline_patches_per_s"],
        );
    }
    *out += "\n## Roster CPU per request (from /proc, excluding the API server; medians)\n\nFor scale, two figures from the baseline phase: the bench's own CPU per create through kube-rs (what one API write costs a client on this machine; a SCIM POST makes two) and Roster's CPU per baseline User it only received through its watch.\n\n| concurrency | ms per user POST (target ≤ 0.3) | ms per 256-member PATCH (target ≤ 5) | kube client ms per create | Roster ms per watched User |\n|---|---|---|---|---|\n";
    for level in levels {
        let m = &level["median"];
        *out += &format!(
            "| {} | {:.3} ({}) | {:.2} ({}) | {:.3} | {:.3} |\n",
            level["concurrency"],
            num(&m["cpu_ms_per_user_post"]),
            verdict(num(&m["cpu_ms_per_user_post"]) <= 0.3),
            num(&m["cpu_ms_per_256_member_patch"]),
            verdict(num(&m["cpu_ms_per_256_member_patch"]) <= 5.0),
            num(&m["client_cpu_ms_per_create"]),
            num(&m["cpu_ms_per_watched_user"]),
        );
    }
    *out += "\n";
}

fn saml(out: &mut String, s: &Value) {
    let known = &s["known_users"];
    *out += &format!(
        "## SAML ACS: IdP-initiated logins to a Jit policy, signed assertions (xmlsec1, pre-signed), concurrency {}\n\n| logins | count | logins/s (target ≥ 200) | p50 ms | p99 ms (target ≤ 20) |\n|---|---|---|---|---|\n| known users | {} | {} ({}) | {} | {} ({}) |\n| first logins (JIT creates the user) | {} | {} | {} | {} |\n| floor: one bare API write (a ConsumedAssertion create, no login) | {} | {} | {} | {} |\n\n{}Roster CPU per known-user login: {} ms. A login must make at least one API write (it consumes the assertion id, so a replay fails on every replica); the floor row is that write alone at the same concurrency, in the same run. A known person's login within a minute of their last one writes no `status.lastLogin` (it is kept to the minute); the bench's 1000 known-user logins are 10 by each of 100 people.\n\n",
        s["concurrency"],
        known["requests"],
        known["throughput_per_s"],
        verdict(num(&known["throughput_per_s"]) >= 200.0),
        known["p50_ms"],
        known["p99_ms"],
        verdict(num(&known["p99_ms"]) <= 20.0),
        s["first_logins"]["requests"],
        s["first_logins"]["throughput_per_s"],
        s["first_logins"]["p50_ms"],
        s["first_logins"]["p99_ms"],
        s["one_api_write"]["requests"],
        s["one_api_write"]["throughput_per_s"],
        s["one_api_write"]["p50_ms"],
        s["one_api_write"]["p99_ms"],
        spread(s),
        s["cpu_ms_per_known_login"],
    );
}

/// Every run's figures, when the section ran more than once.
fn spread(s: &Value) -> String {
    let list = |key: &str| {
        s[key]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    match s["runs"].as_u64() {
        Some(runs) if runs > 1 => format!(
            "{runs} runs, each in its own namespace; the rows are the run with the median known-user p99. Known-user p99 by run: {} ms; the bare write's: {} ms; Roster CPU per known-user login: {} ms.\n\n",
            list("known_p99_ms_by_run"),
            list("bare_write_p99_ms_by_run"),
            list("cpu_ms_per_known_login_by_run"),
        ),
        _ => String::new(),
    }
}

fn propagation(out: &mut String, p: &Value) {
    *out += &format!(
        "## Propagation: SCIM change to the application (scim2-server) reflecting it\n\nOne change at a time (steady state), {} of each kind; the application is polled every {} ms.\n\n| change | p50 ms | p99 ms (target ≤ 1000) |\n|---|---|---|\n",
        p["changes_per_kind"], p["poll_interval_ms"]
    );
    for k in p["kinds"].as_array().into_iter().flatten() {
        *out += &format!(
            "| {} | {} | {} ({}) |\n",
            k["kind"].as_str().unwrap_or_default(),
            k["p50_ms"],
            k["p99_ms"],
            verdict(num(&k["p99_ms"]) <= 1000.0)
        );
    }
    *out += "\nThe deprovisioning circuit breaker is on in every row but the last (with limits this bench never reaches: it deactivates one user after another); the last row turns it off, so the breaker's cost is the difference between the two deactivation rows of one run.\n";
    let behind = &p["deactivation_behind_burst"];
    *out += &format!(
        "\nDeactivations first: each application's throttle keeps one of its 4 call slots for deactivations, deletions and member removals, so they do not queue behind creates. A deactivation sent right after {} SCIM creates reached the application after {} ms.\n\n",
        behind["burst_creates"], behind["deactivation_ms"]
    );
}

fn resync(out: &mut String, r: &Value) {
    *out += &format!(
        "## Resync: restart with {} unchanged, already-synced users\n\n| figure | value | target |\n|---|---|---|\n| downstream writes | {} | 0 ({}) |\n| downstream calls (reads included) | {} | |\n| wall time from start to every User reconciled | {} s | |\n| User reconciles | {} | |\n| users synced afterwards | {} | all |\n\nThe users were provisioned into scim2-server and given the status the controller writes directly by the bench ({} s): the controller's own provisioning of 10,000 users into scim2-server took over 15 minutes, as scim2-server scans every user per lookup.\n\n",
        r["users"],
        r["downstream_writes"],
        verdict(num(&r["downstream_writes"]) == 0.0),
        r["downstream_calls"],
        r["resync_wall_s"],
        r["user_reconciles"],
        r["users_synced_after"],
        r["initial_provisioning_s"],
    );
}

fn access(out: &mut String, a: &Value) {
    *out += &format!(
        "## AccessGrants: {} Groups granted `view` in {} namespaces ({} RoleBindings), {} Users\n\nPropagation: one SCIM change at a time, from the SCIM answer to the RoleBinding in one of the namespaces saying so (polled every {} ms).\n\n| change | changes | p50 ms | p99 ms (target: seconds) |\n|---|---|---|---|\n| member removed | {} | {} | {} ({}) |\n| member added | {} | {} | {} ({}) |\n\n",
        a["groups"],
        a["namespaces"],
        a["role_bindings"],
        a["users"],
        a["poll_interval_ms"],
        a["removal"]["changes"],
        a["removal"]["p50_ms"],
        a["removal"]["p99_ms"],
        verdict(num(&a["removal"]["p99_ms"]) <= 5000.0),
        a["addition"]["changes"],
        a["addition"]["p50_ms"],
        a["addition"]["p99_ms"],
        verdict(num(&a["addition"]["p99_ms"]) <= 5000.0),
    );
    *out += &format!(
        "| figure | value | target |\n|---|---|---|\n| grants created to every binding right | {} s | |\n| churn: changes from 8 SCIM clients in {} s (members, deactivations, reactivations, {} group deletions) | {} | |\n| after the churn: time until every binding matched the directory | {} s | |\n| stale subjects then (access that should have ended) | {} | 0 ({}) |\n| missing subjects then | {} | 0 ({}) |\n\n",
        a["initial_s"],
        a["churn_s"],
        a["groups_deleted"],
        a["churn_changes"],
        a["churn_settled_s"],
        a["stale_subjects"],
        verdict(num(&a["stale_subjects"]) == 0.0),
        a["missing_subjects"],
        verdict(num(&a["missing_subjects"]) == 0.0),
    );
}

fn postgres(out: &mut String, p: &Value) {
    *out += &format!(
        "## PostgreSQL: {} Users and {} Groups of 10 pushed over SCIM, provisioned as roles

A real PostgreSQL 15 (TLS), through the controllers.

| figure | value |
|---|---|
| SCIM pushes done (Users, then Groups with members) | {} s |
| every role and grant in PostgreSQL ({} roles, {} grants) | {} s |
| server transactions Roster caused (each statement is one) | {} |
| per User (its role, its share of groups and grants) | {} |
| member added: SCIM answer to grant, p50 / p99 ({} changes, polled every {} ms) | {} / {} ms |

",
        p["users"],
        p["groups"],
        p["pushed_s"],
        num(&p["users"]) + num(&p["groups"]),
        p["grants"],
        p["provisioned_s"],
        p["transactions"],
        p["transactions_per_user"],
        p["changes"],
        p["poll_interval_ms"],
        p["p50_ms"],
        p["p99_ms"],
    );
}

fn memory(out: &mut String, m: &Value) {
    let mb = |mib: f64| mib * 1.048_576;
    let settled = num(&m["rss_mib_reconciled"]);
    *out += &format!(
        "## Memory: Roster with {} Users and {} Groups ({} members each) in the cluster, all synced\n\n| moment | RSS MiB | RSS MB (target ≤ 300) |\n|---|---|---|\n| /readyz answered ({} s after start) | {} | {:.0} |\n| steady state: every object reconciled once ({} s after start), then 12 s | {} | {:.0} ({}) |\n\nDownstream calls meanwhile: {} (the objects were created synced).\n\n",
        m["users"],
        m["groups"],
        m["members_per_group"],
        m["ready_after_s"],
        m["rss_mib_ready"],
        mb(num(&m["rss_mib_ready"])),
        m["reconciled_after_s"],
        settled,
        mb(settled),
        verdict(mb(settled) <= 300.0),
        m["downstream_calls"],
    );
    if let Some(requests) = m["api_requests"].as_object() {
        let listed: Vec<String> = requests
            .iter()
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        *out += &format!(
            "The start, as the API server counted it (`apiserver_request_total` before and after, Roster's kinds, Events and Leases; the caches' streamed first lists are watches, counted when they end): {}; {} answers 4xx and {} answers 5xx (target 0). kube-apiserver peak RSS during the start: {} MiB. Time to ready {} s (target ≤ 30 s: {}); every object reconciled once after {} s (target ≤ 60 s: {}); {} User and {} Group reconciles for {} and {} objects (Users at rest are counted, not queued).\n\n",
            if listed.is_empty() {
                "no request completed".to_owned()
            } else {
                listed.join(", ")
            },
            m["api_4xx"],
            m["api_5xx"],
            m["apiserver_peak_rss_mib"],
            m["ready_after_s"],
            verdict(num(&m["ready_after_s"]) <= 30.0),
            m["reconciled_after_s"],
            verdict(num(&m["reconciled_after_s"]) <= 60.0),
            m["user_reconciles"],
            m["group_reconciles"],
            m["users"],
            m["groups"],
        );
    }
}

fn gate(out: &mut String, g: &Value) {
    *out += &format!(
        "## SSO gate: forward-auth checks on one replica ({} live sessions, users in {} groups)\n\nEach check opens the signed cookie and reads the User and its groups from the replica's watch-fed directory; no API call. Targets: p99 ≤ {} ms, ≥ {} checks/s. With c checks in flight the mean latency is c ÷ throughput (Little's law), whatever a check costs: once the machine's two cores are saturated (the load generator runs on them too), latency at high concurrency is queueing.\n\n| concurrency | checks/s | p50 ms | p99 ms | c ÷ checks/s, ms | CPU µs/check | verdict |\n|---|---|---|---|---|---|---|\n",
        g["live_sessions"], g["groups"], g["target_p99_ms"], g["target_checks_per_s"]
    );
    for level in g["levels"].as_array().into_iter().flatten() {
        let met = num(&level["p99_ms"]) <= num(&g["target_p99_ms"]);
        let queueing_ms =
            num(&level["concurrency"]) / num(&level["throughput_per_s"]).max(1.0) * 1000.0;
        *out += &format!(
            "| {} | {} | {} | {} | {queueing_ms:.2} | {} | p99 {} |\n",
            level["concurrency"],
            level["throughput_per_s"],
            level["p50_ms"],
            level["p99_ms"],
            level["cpu_us_per_check"],
            verdict(met)
        );
    }
    let best = g["levels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| num(&l["throughput_per_s"]))
        .fold(0.0, f64::max);
    let r = &g["revocation"];
    *out += &format!(
        "\nBest throughput {best:.0} checks/s: {}.\n\nRevocation, from a SCIM PATCH `active: false` answered 2xx by one replica to the first refused check on another replica (the User watch carries it), over {} trials with the other sessions checked meanwhile ({} checks/s): p50 {} ms, p99 {} ms, max {} ms (target p99 ≤ {} ms: {}). On the replica that wrote, the refusal is immediate (it records its own write).\n\n",
        verdict(best >= num(&g["target_checks_per_s"])),
        r["trials"],
        r["background_checks_per_s"],
        r["p50_ms"],
        r["p99_ms"],
        r["max_ms"],
        g["target_revocation_p99_ms"],
        verdict(num(&r["p99_ms"]) <= num(&g["target_revocation_p99_ms"]))
    );
}
