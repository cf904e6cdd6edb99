//! The console's tools: login codes, and the day's trade bill with its tamper controls.

use maud::{html, Markup};

use crate::crypto;
use crate::sim::{lock, Simulator};

pub(super) fn tools(sim: &Simulator) -> Markup {
    let today = crypto::now_cst().date().to_string();
    let (early, broken) = {
        let st = lock(&sim.inner.state);
        (st.bill.tamper.early, st.bill.tamper.wrong_hash)
    };
    let status = match (early, broken) {
        (false, false) => "bills for a day from 10:00 Beijing time the next day",
        (true, false) => "bills up to today served at once",
        (false, true) => "hash_value broken",
        (true, true) => "served at once, hash_value broken",
    };
    html! {
        div.tools {
            div {
                h2 { "Login codes" small { "what wx.login() returns on the phone" } }
                form.card data-action="login" {
                    label for="openid" { "openid" }
                    input #openid type="text" name="openid" value="o_demo_user" autocomplete="off";
                    div.actions {
                        button.primary type="submit" { "Issue a code" }
                    }
                    label { "code (valid 5 minutes, once, at /sns/jscode2session)" }
                    code #login-code {}
                }
            }
            div {
                h2 { "Trade bill" small { (status) } }
                form.card data-action="bill" {
                    label for="bill-date" { "day (Beijing time)" }
                    input #bill-date type="date" name="date" value=(today);
                    div.actions {
                        button type="submit" name="which" value="view" { "View" }
                        button type="submit" name="which" value="download" { "Download" }
                    }
                    label for="bill-number" { "make the bill disagree: out_trade_no or out_refund_no" }
                    input #bill-number type="text" name="number" autocomplete="off";
                    label for="bill-fen" { "the amount the bill shows instead (fen)" }
                    input #bill-fen type="number" name="fen" step="1";
                    div.actions {
                        button type="submit" name="which" value="drop" { "Leave out of the bill" }
                        button type="submit" name="which" value="amount" { "Show this amount" }
                        button type="button" data-post="/sim/bill/hash?broken=true" data-label="break the bill's hash" { "Break the hash" }
                        button type="button" data-post="/sim/bill/early?on=true" data-label="serve today's bill now" { "Serve today's bill now" }
                        button type="button" data-post="/sim/bill/reset" data-label="bill reset" { "Reset (drops, amounts, hash)" }
                    }
                    pre.bill #bill-file { "View shows the file here." }
                }
            }
        }
    }
}
