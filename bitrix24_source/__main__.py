"""`python -m bitrix24_source …`: see bitrix24_source.cli."""

from bitrix24_source.cli import main

raise SystemExit(main())
