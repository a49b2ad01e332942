//! From classified connections to migrations and their figures: grouping,
//! bytes by role, interface and VLAN, throughput and RTT histograms, the
//! named causes of stuck or slow migrations, verdicts.

pub mod budget;
pub mod diagnosis;
pub mod live;
pub mod migration;
pub mod series;
pub mod verdict;
