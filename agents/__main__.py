from agents.run import main

raise SystemExit(main())
