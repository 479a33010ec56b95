"""Analysis on top of the engines: verification, the AL metric, timesteps and energy cost."""
