//! A deterministic stream of LANGUAGE.md §9 messages for the examples' shop schema, in time
//! order from 2026-01-01: identifies, carts, orders, page and product views, sign-ups, app
//! opens, from `users` users, one every `spacing` seconds give or take.

pub fn random_stream(seed: u64, count: u64, users: u64, spacing: u64) -> Vec<String> {
    let mut seed = seed;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut lines = Vec::new();
    for i in 0..count {
        let user = format!("u{}", next(users));
        let at = 1_767_225_600 + i * spacing + next(spacing);
        let time = chrono::DateTime::from_timestamp(at as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let cart = format!("c{}", next(5));
        lines.push(match next(8) {
            0 => format!(
                r#"{{"type":"identify","userId":"{user}","timestamp":"{time}","traits":{{"plan":"{}","country":"US","lifetime_value":{}.0,"signed_up_at":"2026-01-01T00:00:00Z","tags":[],"timezone":"Europe/Istanbul","push_enabled":true}}}}"#,
                ["free", "trial", "paid"][next(3) as usize],
                next(400)
            ),
            1 | 2 => format!(
                r#"{{"type":"track","event":"ProductAdded","userId":"{user}","timestamp":"{time}","properties":{{"product_id":"p{}","cart_id":"{cart}","name":"Shoe","price":{}.5,"product":{{"sku":"s"}}}}}}"#,
                next(3),
                next(80)
            ),
            3 => format!(
                r#"{{"type":"track","event":"OrderCompleted","userId":"{user}","timestamp":"{time}","properties":{{"order_id":"o{i}","cart_id":"{cart}","total":{}.0,"currency":"USD"}}}}"#,
                next(300)
            ),
            4 => format!(
                r#"{{"type":"track","event":"PageViewed","userId":"{user}","timestamp":"{time}","properties":{{"url":"/","utm_source":"ads"}}}}"#
            ),
            5 => format!(
                r#"{{"type":"track","event":"AppOpened","userId":"{user}","timestamp":"{time}","properties":{{"platform":"ios"}}}}"#
            ),
            6 => format!(
                r#"{{"type":"track","event":"AccountCreated","userId":"{user}","timestamp":"{time}","properties":{{"method":"email"}}}}"#
            ),
            _ => format!(
                r#"{{"type":"track","event":"ProductViewed","userId":"{user}","timestamp":"{time}","properties":{{"product_id":"p1","name":"Hat","price":30.0}}}}"#
            ),
        });
    }
    lines
}
