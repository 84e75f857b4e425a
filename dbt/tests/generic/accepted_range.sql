{#- Rows whose value lies outside [min_value, max_value] (bounds optional; strict when inclusive is false). -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

with

final as (

    select {{ column_name }} as value
    from {{ model }}
    where {{ column_name }} is not null
      and (
          1 = 0
          {%- if min_value is not none %}
          or {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}
          {%- endif %}
          {%- if max_value is not none %}
          or {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}
          {%- endif %}
      )

)

select * from final

{% endtest %}
