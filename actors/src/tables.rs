//! The OpenFlow tables as one immutable, versioned snapshot.
//!
//! API contract (implementation in progress on main):
//! - `Tables::new()`, `version()`, `add(Rule) -> Arc<RuleEntry>` (an add with
//!   the same table, priority and match replaces), `delete_where(..)`,
//!   `replace_all(Vec<Rule>)`, `rules()` (every rule, by table then
//!   descending priority), `lookup(table, &Flow, &mut FlowWildcards)`.
//! - `RuleEntry { id: u64, rule: Rule }`: `id` is unique for the life of
//!   the process; revalidators credit statistics to it.
