"""`ecomlake dashboard`: the embedded stack's live dashboard, a Dash (Plotly) app on 127.0.0.1:DASHBOARD_PORT.

Dash, because it is a maintained, light Flask app whose charts are Plotly's (no hand-drawn SVG), refreshes with a
dcc.Interval poll (no websocket server) and serves its JavaScript from the installed package (nothing from the
network). Every refresh the page and `/api/summary` show the same dict (serving/summary.py): the questions of
trino/queries on gold's read snapshot, freshness per layer and the demo's latency.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any, Sequence

from ecomlake.arguments import positive_float
from ecomlake.errors import EcomlakeError
from ecomlake.settings import Settings, load
from serving.summary import OK, SummaryReader

REFRESH_SECONDS = 3.0
KPIS = (  # element id, label, column of kpis_last_60min, format
    ("kpi-gmv", "GMV (USD)", "gmv_usd", "${:,.2f}"),
    ("kpi-paid-orders", "Paid orders", "paid_orders", "{:,.0f}"),
    ("kpi-aov", "Avg order value", "aov_usd", "${:,.2f}"),
    ("kpi-attempts", "Payment attempts", "attempts", "{:,.0f}"),
    ("kpi-failures", "Failed payments", "failures", "{:,.0f}"),
    ("kpi-failure-rate", "Failure rate", "failure_rate_pct", "{:.2f} %"),
    ("kpi-refunds", "Refunds", "refunds", "{:,.0f}"),
    ("kpi-cancellations", "Cancellations", "cancelled_orders", "{:,.0f}"),
)
LAYERS = ("bronze", "silver", "gold")
GRAPHS = ("graph-sales", "graph-aov", "graph-payments", "graph-cancellations", "graph-currency", "graph-method",
          "graph-quarantine")
CARD = {"background": "#fff", "borderRadius": "8px", "padding": "10px 14px", "boxShadow": "0 1px 3px #0002"}
STATUS_COLORS = {"ok": "#1a7f37", "empty": "#9a6700", "busy": "#9a6700", "no_gold": "#9a6700", "no_lake": "#cf222e"}


def fmt(template: str, value: Any) -> str:
    return "–" if value is None else template.format(value)


def columns(question: dict | None) -> dict[str, list]:
    """A question's rows as {column: values}, oldest minute first for per-minute series."""
    if not question:
        return {}
    rows = list(question["rows"])
    if question["columns"] and question["columns"][0] == "minute_bucket":
        rows.reverse()
    return {name: [row[i] for row in rows] for i, name in enumerate(question["columns"])}


def _figure(title: str, traces: list, secondary: str | None = None, message: str = ""):
    import plotly.graph_objects as go

    layout = dict(title=dict(text=title, x=0.01, font=dict(size=14)), margin=dict(l=50, r=50, t=40, b=30),
                  height=260, template="plotly_white", legend=dict(orientation="h", y=-0.2),
                  uirevision=title)
    if secondary:
        layout["yaxis2"] = dict(title=secondary, overlaying="y", side="right", rangemode="tozero", showgrid=False)
    figure = go.Figure(data=traces, layout=layout)
    if not traces:
        figure.add_annotation(text=message or "no data", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False)
    return figure


def figures(summary: dict) -> list:
    import plotly.graph_objects as go

    q = summary.get("questions") or {}
    empty = summary.get("message", "")
    sales = columns(q.get("recent_sales"))
    pay = columns(q.get("payments_per_minute"))
    cancels = columns(q.get("cancellations_refunds_per_minute"))
    currency = columns(q.get("gmv_by_currency"))
    method = columns(q.get("payments_by_method"))
    quarantine = columns(q.get("quarantine_by_reason"))
    return [
        _figure("GMV (USD) and paid orders per minute", [
            go.Bar(x=sales["minute_bucket"], y=sales["gmv_usd"], name="GMV (USD)", marker_color="#2f6fdf"),
            go.Scatter(x=sales["minute_bucket"], y=sales["paid_orders"], name="paid orders", yaxis="y2",
                       mode="lines+markers", line_color="#1a9c5b"),
        ] if sales.get("minute_bucket") else [], secondary="paid orders", message=empty),
        _figure("Average order value (USD) per minute", [
            go.Scatter(x=sales["minute_bucket"], y=sales["aov_usd"], name="AOV (USD)", mode="lines+markers",
                       line_color="#8250df"),
        ] if sales.get("minute_bucket") else [], message=empty),
        _figure("Payment attempts, failures and failure rate per minute", [
            go.Bar(x=pay["minute_bucket"], y=pay["attempts"], name="attempts", marker_color="#9ecbff"),
            go.Bar(x=pay["minute_bucket"], y=pay["failures"], name="failures", marker_color="#cf222e"),
            go.Scatter(x=pay["minute_bucket"], y=pay["failure_rate_pct"], name="failure rate %", yaxis="y2",
                       mode="lines+markers", line_color="#bc4c00"),
        ] if pay.get("minute_bucket") else [], secondary="failure rate %", message=empty),
        _figure("Cancellations and refunds per minute", [
            go.Bar(x=cancels["minute_bucket"], y=cancels["cancelled_orders"], name="cancelled orders",
                   marker_color="#6e7781"),
            go.Bar(x=cancels["minute_bucket"], y=cancels["refunds"], name="refunds", marker_color="#bf8700"),
        ] if cancels.get("minute_bucket") else [], message="no cancellations or refunds in the last hour"),
        _figure("GMV by currency (converted to USD)", [
            go.Bar(x=currency["currency"], y=currency["gmv_usd"], name="GMV (USD)", marker_color="#2f6fdf",
                   text=[f"{c} {v:,.2f}" for c, v in zip(currency["currency"], currency["gmv_local"])]),
        ] if currency.get("currency") else [], message=empty),
        _figure("Captured payments by method (USD)", [
            go.Bar(x=method["payment_method"], y=method["captured_usd"], name="captured (USD)",
                   marker_color="#1a9c5b"),
            go.Bar(x=method["payment_method"], y=method["refunded_usd"], name="refunded (USD)",
                   marker_color="#bf8700"),
        ] if method.get("payment_method") else [], message=empty),
        _figure("Quarantined events by reason", [
            go.Bar(x=quarantine["reason_code"], y=quarantine["events"], name="events", marker_color="#cf222e"),
        ] if quarantine.get("reason_code") else [], message="nothing quarantined in the last hour"),
    ]


def kpi_texts(summary: dict) -> list[str]:
    kpis = columns((summary.get("questions") or {}).get("kpis_last_60min"))
    return [fmt(template, (kpis.get(column) or [None])[0]) for _, _, column, template in KPIS]


def pipeline_texts(summary: dict) -> list[str]:
    texts = []
    for layer in LAYERS:
        lag = (summary.get("freshness") or {}).get(layer, {}).get("lag_s")
        texts.append("–" if lag is None else f"{lag:,.1f} s")
    latency = summary.get("latency")
    texts.append(f"p50 {latency['latency_p50_s']:.1f} s · p95 {latency['latency_p95_s']:.1f} s"
                 if latency else "– (measured by `make demo`)")
    return texts


def _card(element_id: str, label: str):
    from dash import html

    return html.Div([html.Div(label, style={"fontSize": "12px", "color": "#57606a"}),
                     html.Div("–", id=element_id, style={"fontSize": "22px", "fontWeight": 600})],
                    style={**CARD, "flex": "1", "minWidth": "fit-content"})  # a long figure wraps the row


def create_app(settings: Settings, refresh_s: float = REFRESH_SECONDS, reader: SummaryReader | None = None):
    from dash import Dash, Input, Output, dcc, html
    from flask import jsonify

    reader = reader or SummaryReader(settings)
    # None keeps the tab's title while callbacks run: Dash documents it, and annotates the parameter str.
    app = Dash(__name__, title="ecomlake live", update_title=None, serve_locally=True)  # type: ignore[arg-type]

    @app.server.route("/api/summary")
    def api_summary():
        """The page's figures as JSON (docs/dashboard.md)."""
        return jsonify(reader.get())

    app.layout = html.Div([
        html.Div([
            html.H2("ecomlake — live, last 60 minutes", style={"margin": "0"}),
            html.Div(f"lake {settings.lakehouse_uri} · refreshes every {refresh_s:g} s · JSON: /api/summary",
                     style={"color": "#57606a", "fontSize": "12px"}),
        ]),
        html.Div(id="status", style={**CARD, "margin": "10px 0", "fontWeight": 600}),
        html.Div([_card(element_id, label) for element_id, label, _, _ in KPIS],
                 style={"display": "flex", "gap": "10px", "flexWrap": "wrap"}),
        html.Div([_card(f"fresh-{layer}", f"Freshness lag, {layer}") for layer in LAYERS]
                 + [_card("latency", "Publish → gold latency (demo)")],
                 style={"display": "flex", "gap": "10px", "flexWrap": "wrap", "marginTop": "10px"}),
        html.Div([html.Div(dcc.Graph(id=graph_id, config={"displayModeBar": False}), style=CARD)
                  for graph_id in GRAPHS],
                 style={"display": "grid", "gridTemplateColumns": "repeat(auto-fit, minmax(520px, 1fr))",
                        "gap": "10px", "marginTop": "10px"}),
        html.Div(id="as-of", style={"color": "#57606a", "fontSize": "12px", "marginTop": "8px"}),
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
    ], style={"fontFamily": "system-ui, sans-serif", "background": "#f6f8fa", "padding": "16px"})

    outputs = ([Output("status", "children"), Output("status", "style"), Output("as-of", "children")]
               + [Output(element_id, "children") for element_id, *_ in KPIS]
               + [Output(f"fresh-{layer}", "children") for layer in LAYERS] + [Output("latency", "children")]
               + [Output(graph_id, "figure") for graph_id in GRAPHS])

    @app.callback(outputs, Input("tick", "n_intervals"))
    def refresh(_):
        summary = reader.get()
        ok = summary["status"] == OK
        status = "Live: gold read from its latest published build." if ok else summary["message"]
        style = {**CARD, "margin": "10px 0", "fontWeight": 600, "color": STATUS_COLORS.get(summary["status"], "#000")}
        as_of = f"as of {summary['as_of']} UTC (status {summary['status']})"
        return [status, style, as_of, *kpi_texts(summary), *pipeline_texts(summary), *figures(summary)]

    return app


def _bind_problem(port: int) -> str | None:
    """Why 127.0.0.1:port cannot be served (as werkzeug would bind it), or None."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            return err.strerror or str(err)
    return None


class DashboardServer:
    """The app on 127.0.0.1:port in a background thread (werkzeug's threaded server); stop() shuts it down."""

    def __init__(self, settings: Settings, port: int | None = None, refresh_s: float = REFRESH_SECONDS):
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = settings.dashboard_port if port is None else port
        # werkzeug reports a taken port on stderr and exits; check it first to say so in one line.
        problem = _bind_problem(self.port)
        if problem:
            raise EcomlakeError(f"cannot serve the dashboard on 127.0.0.1:{self.port} ({problem}); set "
                                "DASHBOARD_PORT or --port to a free port")
        app = create_app(settings, refresh_s)
        self._server = make_server("127.0.0.1", self.port, app.server, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="ecomlake-dashboard", daemon=True)

    def start(self) -> "DashboardServer":
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="ecomlake dashboard",
                                     description="Serve the live dashboard of the lake at LAKEHOUSE_URI (Ctrl-C stops).")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (env DASHBOARD_PORT, default 8050)")
    parser.add_argument("--refresh", type=positive_float, default=REFRESH_SECONDS,
                        help="seconds between page refreshes (default %(default)s)")
    args = parser.parse_args(argv)
    settings = load()
    server = DashboardServer(settings, port=args.port, refresh_s=args.refresh)
    print(f"dashboard: {server.url}  (JSON: {server.url}api/summary; lake {settings.lakehouse_uri})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
