"""Monitor: windows over the prediction log, drift and label-free accuracy checks, their measured power, reports, analysis, governance and simulated traffic."""
