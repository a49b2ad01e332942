//! From classified connections to migrations and their figures: grouping,
//! bytes by role, interface and VLAN, throughput and RTT histograms.

pub mod budget;
pub mod migration;
pub mod series;
pub mod verdict;
