"""The async side of reer: the command line (cli, options, config), the run's start-up (run) and
its Ctrl-C (shutdown), over five sub-packages:

    generation/  the generator endpoints: one endpoint's client and preflight, the router over several
    search/      one record's search, the worker's claim loop, the input
    services/    the processes a run supervises (scorers, the embedded endpoint) and several scorers
    watch/       what a person watches: live counters, the dashboard, the run's log file
    inspect/     status, show, report and export: they read a run's store and nothing else
"""
