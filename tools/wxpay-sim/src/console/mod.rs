//! The console at `/` and the cashier at `/cashier`: server-rendered pages with a little
//! inline JavaScript, served from the binary (no build step, nothing from elsewhere, works
//! offline). Every value shown is escaped by maud; the SVG of a QR code is the only markup
//! not written by a template, and it is made here from the code alone.
//!
//! The pages' buttons call the control API; [`crate::guard`] keeps other web pages from
//! doing the same.

mod cashier;
mod live;
mod tools;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::respond::{html as html_response, HttpResponse};
use crate::sim::Simulator;

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// Whether `path` is one of the console's or the cashier's.
pub(crate) fn serves(path: &str) -> bool {
    path == "/"
        || path == "/cashier"
        || path.starts_with("/cashier/")
        || path.starts_with("/console/")
}

pub(crate) async fn handle(
    sim: &Simulator,
    method: &str,
    path: &str,
    _query: &str,
    body: &[u8],
) -> HttpResponse {
    match (method, path) {
        ("GET" | "HEAD", "/") => html_response(200, console(sim).into_string()),
        ("GET" | "HEAD", "/console/live") => html_response(200, live::live(sim).into_string()),
        ("GET" | "HEAD", "/cashier") => html_response(200, cashier::form_page(sim).into_string()),
        ("POST", "/cashier") => {
            let (status, page) = cashier::check_page(sim, body);
            html_response(status, page.into_string())
        }
        ("POST", "/cashier/pay") => {
            let (status, page) = cashier::pay_page(sim, body).await;
            html_response(status, page.into_string())
        }
        _ => html_response(
            404,
            layout(
                sim,
                "Not found",
                Nav::None,
                html! {
                    h2 { "Nothing here" }
                    p { "The console is at " a href="/" { "/" } ", the cashier at " a href="/cashier" { "/cashier" } "." }
                },
            )
            .into_string(),
        ),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Nav {
    Console,
    Cashier,
    None,
}

/// Every page: the sandbox banner, the header and the script.
fn layout(sim: &Simulator, title: &str, here: Nav, body: Markup) -> Markup {
    let config = sim.config();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · WeChat Pay sandbox" }
                style { (PreEscaped(CSS)) }
            }
            body {
                div.sandbox role="note" {
                    "Sandbox: this is the wxpay simulator on your machine. No money moves, and nothing here reaches WeChat Pay."
                }
                header {
                    h1 { span.logo {} "WeChat Pay sandbox" }
                    nav {
                        a href="/" class=[(here == Nav::Console).then_some("here")] { "Console" }
                        a href="/cashier" class=[(here == Nav::Cashier).then_some("here")] { "Cashier" }
                    }
                    div.facts {
                        "appid " code { (config.appid) } " · mchid " code { (config.mchid) }
                        " · " (format!("{:?}", config.mode).to_lowercase()) " mode"
                        " · retries ×" (sim.notification_retry_scale())
                    }
                }
                main { (body) }
                div #flash role="status" {}
                script { (PreEscaped(JS)) }
            }
        }
    }
}

fn console(sim: &Simulator) -> Markup {
    layout(
        sim,
        "Console",
        Nav::Console,
        html! {
            div #live { (live::live(sim)) }
            (tools::tools(sim))
        },
    )
}
