//! From classified connections to judged migrations: grouping, figures
//! (bytes by role, interface and VLAN, throughput and RTT histograms),
//! budgets, the rules and their reasons, and the verdict, in one pipeline
//! ([`judge`]) that the final report and the live view share.

pub mod budget;
pub mod judge;
pub mod live;
pub mod migration;
pub mod precopy;
pub mod reasons;
pub mod rules;
pub mod series;
