// `climseg events`: from segmentation masks to climate answers (docs/events.md). Finds every tropical cyclone and
// atmospheric river in a time series of masks (connected components on the sphere, analysis/components.h), measures
// them (area, centroid, intensity from the input fields), tracks them into events (analysis/events.h), and writes a
// catalogue, time series, frequency maps and pictures (analysis/event_outputs.h, analysis/event_maps.h). Under MPI the
// time steps are split over the ranks for reading and objects; rank 0 tracks all objects in time order and writes,
// so the result does not depend on the rank count.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace climseg::apps {

struct EventsCommand {
  CLI::App* cmd = nullptr;
  std::vector<std::string> inputs, fields;
  std::string out, var = "mask", start, end;
  std::vector<std::string> channel_specs;
  std::string channel_map;
  std::string background = "TMQ";
  std::string truth;
  double tc_min_area = 5e4, ar_min_area = 2.5e5;  // km^2
  double tc_min_hours = 15, ar_min_hours = 15;
  int max_gap = 1;
  double tc_max_speed = 80;  // km/h
  double tc_match_km = 500;
  bool no_event_ids = false, no_png = false, quiet = false;
};

void add_events_command(CLI::App& app, EventsCommand& c);
int run_events(const EventsCommand& c);

}  // namespace climseg::apps
