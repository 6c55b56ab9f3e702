#!/usr/bin/env python3
"""Checks of tests/prometheus/run.sh against a running Prometheus that scrapes the brokers and
has loaded deploy/prometheus/alerts.yml.

- every rule group of alerts.yml is loaded, each rule's health is "ok" (Prometheus evaluated
  it without error), and there are as many alerting rules as alerts.yml names;
- every rule's expression (as Prometheus parsed it) evaluates through /api/v1/query;
- every series selector in those expressions that names a broker series (broker_*, process_*,
  up) returns data: a misspelt metric, label or label value would select nothing. Selectors of
  other exporters' series (RabbitMQ's) are only parsed;
- every panel target of the Grafana dashboard, with its variables set ($job, $instance,
  $__rate_interval), evaluates and returns data whose series carry the labels its legend
  names, and so do its selectors and its variables' label_values() selectors;
- the traffic of traffic.py shows in the series (sends, deliveries, histograms, refusals);
- every target is up, and in cluster mode every node's relay is connected.

Standard library only. Usage: check.py PROMETHEUS_URL ALERTS_YML DASHBOARD_JSON NODES CLUSTER(0|1)
"""

import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request

VARIABLES = {"job": "broker", "instance": ".*", "__rate_interval": "1m", "__interval": "15s",
             "__range": "1h", "datasource": "prometheus"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
CLAUSES = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}

passed = 0
failed = 0


def ok(message):
    global passed
    passed += 1
    print(f"  ok    {message}")


def count_ok():
    global passed
    passed += 1


def bad(message):
    global failed
    failed += 1
    print(f"  FAIL  {message}")


def api(base, path, **params):
    url = f"{base}{path}"
    data = urllib.parse.urlencode(params).encode() if params else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read() or b'{"status":"error","error":"empty answer"}')


def query(base, expr):
    """(error or None, result list)."""
    answer = api(base, "/api/v1/query", query=expr)
    if answer.get("status") != "success":
        return answer.get("error", "unknown error"), []
    return None, answer["data"]["result"]


def skip_quoted(text, i):
    quote = text[i]
    i += 1
    while i < len(text) and text[i] != quote:
        i += 2 if text[i] == "\\" and quote != "`" else 1
    return i + 1


def skip_group(text, i, open_char, close_char):
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            i = skip_quoted(text, i)
            continue
        if c == open_char:
            depth += 1
        elif c == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def selectors(expr):
    """The vector selectors of a PromQL expression, as text: `name{matchers}`, `name`, `{...}`.

    A small scanner, not a parser: it skips strings, ranges, numbers and durations, the label
    lists of by/without/on/ignoring/group_left/group_right, and calls (a name followed by `(`,
    or an aggregation followed by by/without).
    """
    found = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            i = skip_quoted(expr, i)
        elif c == "#":
            end = expr.find("\n", i)
            i = n if end < 0 else end
        elif c == "[":
            i = skip_group(expr, i, "[", "]")
        elif c == "{":
            end = skip_group(expr, i, "{", "}")
            found.append(expr[i:end])
            i = end
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            while i < n and (expr[i].isalnum() or expr[i] in "._"):
                i += 1
        elif c.isalpha() or c in "_:":
            start = i
            while i < n and (expr[i].isalnum() or expr[i] in "_:"):
                i += 1
            word = expr[start:i]
            k = i
            while k < n and expr[k].isspace():
                k += 1
            lower = word.lower()
            if lower in CLAUSES:
                if k < n and expr[k] == "(":
                    i = skip_group(expr, k, "(", ")")
                continue
            if lower in KEYWORDS or lower in AGGREGATIONS or (k < n and expr[k] == "("):
                continue
            if k < n and expr[k] == "{":
                end = skip_group(expr, k, "{", "}")
                found.append(word + expr[k:end])
                i = end
            else:
                found.append(word)
        else:
            i += 1
    return found


def metric_name(selector):
    match = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", selector)
    if match:
        return match.group(0)
    match = re.search(r'__name__\s*=\s*"([^"]*)"', selector)
    return match.group(1) if match else ""


def is_ours(selector):
    name = metric_name(selector)
    return name == "up" or name.startswith(("broker_", "process_"))


def substitute(expr):
    def value(match):
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise KeyError(name)
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboard_targets(dashboard):
    def walk(panels):
        for panel in panels:
            yield from walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield panel.get("title", "?"), target["expr"], target.get("legendFormat", "")
    return list(walk(dashboard.get("panels", [])))


def wait_for(what, predicate, seconds):
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def main():
    base, alerts_path, dashboard_path, nodes, cluster = sys.argv[1:6]
    nodes = int(nodes)
    cluster = cluster == "1"
    base = base.rstrip("/")
    selectors_with_data = set()
    external = set()

    def check_selectors(where, expr):
        for selector in selectors(expr):
            if not is_ours(selector):
                error, _ = query(base, selector)
                if error:
                    bad(f"{where}: selector {selector}: {error}")
                elif selector not in external:
                    count_ok()
                external.add(selector)
                continue
            if selector in selectors_with_data:
                continue
            error, result = query(base, selector)
            if error:
                bad(f"{where}: selector {selector}: {error}")
            elif not result:
                bad(f"{where}: selector {selector} selects no series")
            else:
                count_ok()
                selectors_with_data.add(selector)

    print("check: targets")
    targets = api(base, "/api/v1/targets")["data"]["activeTargets"]
    broker_targets = [t for t in targets if t["labels"].get("job") == "broker"]
    up = [t for t in broker_targets if t["health"] == "up"]
    if len(broker_targets) == nodes and len(up) == nodes:
        ok(f"{nodes} broker target(s) up: {', '.join(t['labels']['instance'] for t in up)}")
    else:
        bad(f"broker targets: {len(up)} up of {len(broker_targets)}, expected {nodes}: "
            f"{[(t['scrapeUrl'], t['health'], t.get('lastError')) for t in broker_targets]}")

    print("check: traffic shows in the series")
    expectations = [
        ("sends stored", 'sum(broker_sends_total{result="ok"})', lambda v: v >= 6),
        ("REST sends stored", 'sum(broker_sends_total{source="rest", result="ok"})', lambda v: v >= 5),
        ("STOMP sends stored", 'sum(broker_sends_total{source="stomp", result="ok"})', lambda v: v >= 1),
        ("refused send counted", 'sum(broker_sends_total{result="INVALID_ARGUMENT"})', lambda v: v >= 1),
        ("auth failure counted", "sum(broker_auth_failures_total)", lambda v: v >= 1),
        ("deliveries counted", "sum(broker_deliveries_total)", lambda v: v >= 5),
        ("SEND frames counted", 'sum(broker_frames_in_total{command="SEND"})', lambda v: v >= 1),
        ("sessions accepted", "sum(broker_connections_total)", lambda v: v >= 1),
        ("push latency observed", "sum(broker_push_latency_seconds_count)", lambda v: v >= 6),
        ("batches observed", "sum(broker_store_batch_seconds_count)", lambda v: v >= 1),
        ("batch sizes observed", "sum(broker_store_batch_messages_sum)", lambda v: v >= 6),
        ("push latency p99 over 1m is a number",
         "histogram_quantile(0.99, sum by (le) (rate(broker_push_latency_seconds_bucket[1m])))",
         lambda v: not math.isnan(v)),
    ]
    if cluster:
        expectations.append(("every node's relay connected", "sum(broker_relay_connected == 1)",
                             lambda v: v == nodes))

    def value_of(expr):
        error, result = query(base, expr)
        if error or len(result) != 1:
            return None
        return float(result[0]["value"][1])

    for label, expr, predicate in expectations:
        holds = wait_for(label, lambda: (lambda v: v is not None and predicate(v))(value_of(expr)), 20)
        if holds:
            ok(f"{label}: {expr} = {value_of(expr):g}")
        else:
            bad(f"{label}: {expr} = {value_of(expr)}")

    print("check: rules")
    text = open(alerts_path, encoding="utf-8").read()
    file_groups = re.findall(r"^\s*-\s*name:\s*([\w.-]+)\s*$", text, re.M)
    file_alerts = re.findall(r"^\s*-\s*alert:\s*(\w+)\s*$", text, re.M)

    def rule_groups():
        return api(base, "/api/v1/rules")["data"]["groups"]

    def all_evaluated():
        groups = rule_groups()
        rules = [r for g in groups for r in g["rules"]]
        return rules and all(r["health"] != "unknown" for r in rules)

    wait_for("rules evaluated", all_evaluated, 30)
    groups = rule_groups()
    loaded = {g["name"]: g for g in groups}
    for name in file_groups:
        if name in loaded:
            ok(f"rule group {name} loaded ({len(loaded[name]['rules'])} rules)")
        else:
            bad(f"rule group {name} of {alerts_path} is not loaded: {list(loaded)}")
    rules = [r for g in groups for r in g["rules"]]
    alerting = sorted(r["name"] for r in rules if r["type"] == "alerting")
    if alerting == sorted(file_alerts):
        ok(f"{len(alerting)} alerting rules, as many as {alerts_path} names")
    else:
        bad(f"alerting rules loaded {alerting} differ from the file's {sorted(file_alerts)}")
    for rule in rules:
        if rule["health"] != "ok":
            bad(f"rule {rule['name']}: health {rule['health']}: {rule.get('lastError')}")
    if rules and all(r["health"] == "ok" for r in rules):
        ok(f"every rule's health is ok")

    rule_exprs = 0
    active = []
    for rule in rules:
        expr = rule["query"]
        rule_exprs += 1
        error, result = query(base, expr)
        if error:
            bad(f"rule {rule['name']}: {expr}: {error}")
            continue
        count_ok()
        if result:
            active.append(rule["name"])
        check_selectors(f"rule {rule['name']}", expr)
    print(f"  ..    {rule_exprs} rule expressions evaluated, with their selectors")
    if active:
        print(f"  note  conditions true right now (pending, not firing: every rule has a `for`): "
              f"{', '.join(active)}")

    print("check: dashboard")
    dashboard = json.load(open(dashboard_path, encoding="utf-8"))
    if dashboard.get("schemaVersion", 0) < 36:
        bad(f"schemaVersion {dashboard.get('schemaVersion')}")
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    for name, variable in variables.items():
        definition = variable.get("definition") or ""
        match = re.match(r"\s*label_values\((.*),\s*\w+\s*\)\s*$", definition)
        if match:
            check_selectors(f"variable {name}", substitute(match.group(1)))
    dashboard_exprs = 0
    for title, raw, legend in dashboard_targets(dashboard):
        try:
            expr = substitute(raw)
        except KeyError as unknown:
            bad(f"panel {title!r}: unknown variable ${unknown.args[0]} in {raw}")
            continue
        dashboard_exprs += 1
        error, result = query(base, expr)
        if error:
            bad(f"panel {title!r}: {expr}: {error}")
        elif not result:
            bad(f"panel {title!r}: {expr}: no data")
        else:
            # A label the legend names but the series lack: a grouping by a misspelt label.
            lacking = sorted({label for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)
                              for series in result if label not in series["metric"]})
            if lacking:
                bad(f"panel {title!r}: {expr}: the legend names {lacking}, the series lack them")
            else:
                count_ok()
        check_selectors(f"panel {title!r}", expr)
    print(f"  ..    {dashboard_exprs} dashboard expressions evaluated, with their selectors")

    print(f"check: {rule_exprs} rule and {dashboard_exprs} dashboard expressions evaluated; "
          f"{len(selectors_with_data)} distinct broker selectors with data; "
          f"{len(external)} selectors of other exporters parsed only ({', '.join(sorted(external))})")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
