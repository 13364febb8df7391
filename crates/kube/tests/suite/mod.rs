mod chart;
mod controller;
mod crd;
mod pod;
