#!/bin/sh
# Slurm PrologSlurmctld (slurm.conf: PrologSlurmctld=/etc/ems/prolog_slurmctld.sh): a job that
# must not be throttled (`sbatch --comment=flex_tier=0`) is not started on nodes whose GPU row
# ems's demand response caps now or within the next 10 minutes: the script fails, and Slurm
# requeues the batch job instead of starting it (it runs on the controller, so no node is
# drained). Throttleable jobs start anywhere: their row's flex tier says how much they may
# give up during an event (docs/demand-response.md).
# /etc/ems/rows maps each node to its row, one `node row` pair a line.
# Tested against a real slurmctld: tests/integration/test_slurm.py.
EMS_URL=${EMS_URL:-http://ems:8080}
EMS_ROWS=${EMS_ROWS:-/etc/ems/rows}
EMS_DR_BUDGET=${EMS_DR_BUDGET:-/usr/local/lib/ems/dr_budget.py}
EMS_AHEAD_S=${EMS_AHEAD_S:-600}
# slurmctld gives the prolog the job's comment (Slurm 22.05 and later); older ones are asked
comment=${SLURM_JOB_COMMENT-$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | tr ' ' '\n' | grep '^Comment=')}
case "$comment" in
  *flex_tier=0*) ;;
  *) exit 0 ;;
esac
for node in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do
  row=$(awk -v n="$node" '$1 == n {print $2}' "$EMS_ROWS")
  [ -n "$row" ] || continue
  # EMS_DR_BUDGET is a command line (an interpreter and the script): split on purpose; the row
  # joined to its option, so a row name that starts with "-" is not read as an option
  $EMS_DR_BUDGET --url="$EMS_URL" --row="$row" --ahead-s="$EMS_AHEAD_S"
  if [ $? -eq 3 ]; then
    echo "ems: $node's row $row is under a demand-response budget: tier-0 job $SLURM_JOB_ID requeued" >&2
    exit 1
  fi  # 0: free; 2: ems cannot be asked, do not block work on it
done
exit 0
